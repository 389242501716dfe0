// Package protogen pins the protobuf code generators (buf, protoc-gen-go, protoc-gen-go-grpc) used by
// scripts/genproto.sh, in a module of its own so that they never enter the library's dependency graph.
package protogen
