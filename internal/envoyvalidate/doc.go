// Package envoyvalidate checks Envoy configuration the way Envoy would before accepting it: every
// message, and every message packed in an Any at any depth, passes its protoc-gen-validate rules and
// survives a protojson round trip. Envoy cannot run here, so this is what tests trust instead.
package envoyvalidate
