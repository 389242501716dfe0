//go:build tools

// Package protogen pins the protobuf code generators used by scripts/genproto.sh.
// It is its own module so that buf and the generators never enter the library's dependency graph.
package protogen

import (
	_ "github.com/bufbuild/buf/cmd/buf"
	_ "google.golang.org/grpc/cmd/protoc-gen-go-grpc"
	_ "google.golang.org/protobuf/cmd/protoc-gen-go"
)
