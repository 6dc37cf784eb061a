package envoybuild

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Panic-free for every message built here: anypb.New fails only on a message that cannot marshal,
// which a generated Envoy message built in this package never is.
func mustAny(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	// Deterministic, so equal resources pack to equal bytes and keep their version hash.
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		panic(fmt.Sprintf("envoybuild: pack %T: %v", m, err))
	}
	return a
}
