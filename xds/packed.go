package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// packed is a resource as it goes on the wire: marshaled once, shared by every cache and every
// response, and versioned by its content. Publishing keeps only these, not the built messages, so a
// tenant costs its wire size in memory.
type packed struct {
	any     *anypb.Any
	version string
}

// pack marshals m deterministically, so equal resources get equal versions.
func pack(typeURL string, m proto.Message) (packed, error) {
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return packed{}, fmt.Errorf("marshal %T: %w", m, err)
	}
	return packed{any: &anypb.Any{TypeUrl: typeURL, Value: raw}, version: shortHash(raw)}, nil
}

// shortHash is a resource version: 64 bits of the content's SHA-256, in hex. Every delta client's
// version map holds one per resource, so the 16 characters (instead of 64) matter at scale.
func shortHash(raw []byte) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:8])
}
