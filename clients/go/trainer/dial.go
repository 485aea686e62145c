package trainer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// MaxMessageBytes is the server's default max_message_bytes: a FULL rollout carries token data.
const MaxMessageBytes = 64 << 20

// Connection names the server and how to reach it, as the example commands' flags give it.
type Connection struct {
	Server, Token          string
	TLSCA, TLSCert, TLSKey string // PEM files; any of CA or cert turns TLS on (plaintext otherwise)
}

// Dial opens a client connection (lazily: the first call connects).
func (c Connection) Dial() (*grpc.ClientConn, error) {
	creds, err := c.transportCredentials()
	if err != nil {
		return nil, err
	}
	return grpc.NewClient(c.Server, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)))
}

// WithToken adds the bearer token (if any) to the outgoing metadata of ctx.
func (c Connection) WithToken(ctx context.Context) context.Context {
	if c.Token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.Token)
}

func (c Connection) transportCredentials() (credentials.TransportCredentials, error) {
	if c.TLSCA == "" && c.TLSCert == "" {
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSCA != "" {
		pem, err := os.ReadFile(c.TLSCA)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate found", c.TLSCA)
		}
	}
	if c.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(cfg), nil
}
