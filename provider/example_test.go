package provider_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/providers/memory"
)

func ExampleSensitive() {
	password := provider.SensitiveString("correct horse battery staple")
	fmt.Println(password)
	fmt.Printf("%v %+v %#v %x\n", password, password, password, password)
	creds := provider.Credentials{Username: "app", Password: password}
	fmt.Println(creds)
	// Output:
	// [REDACTED]
	// [REDACTED] [REDACTED] [REDACTED] [REDACTED]
	// Credentials{role= username=app password=[REDACTED] token=none extra=[] lease=none}
}

func ExampleClient() {
	ctx := context.Background()
	driver, _ := memory.New(ctx, memory.Config{Secrets: map[string]string{"db-password": "s3cret"}})
	client, _ := provider.NewClient(driver, provider.ClientConfig{Name: "dev"})
	defer client.Close()

	s, _ := client.Secret(ctx, "db-password") // reaches the provider once, then served from cache
	fmt.Println(s.Value.Len(), "bytes")

	_, err := client.Secret(ctx, "missing")
	fmt.Println(errors.Is(err, provider.ErrNotFound))
	fmt.Println(err)
	// Output:
	// 6 bytes
	// true
	// keyfort: provider "dev": Secret "missing": not found: no such secret in memory
}
