package main

import (
	"bytes"
	"testing"
)

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"-agent", "a"},
		{"-agent", "a", "-input", "x.jsonl", "-view", "everything"},
		{"-agent", "a", "-input", "x.jsonl", "-credits", "0"},
		{"-agent", "a", "-input", "x.jsonl", "-tls-cert", "c.pem"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 2 {
			t.Fatalf("%v: exit %d", args, code)
		}
	}
}

func TestMissingInputExits1(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-agent", "a", "-input", t.TempDir() + "/none.jsonl"}, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}
