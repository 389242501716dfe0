package aws_test

import (
	"encoding/base64"
	"strings"
	"testing"
)

func decodeHeader(t *testing.T, tok string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
