package envoybuild

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// mustAny packs m deterministically, so equal resources pack to equal bytes and keep their version
// hash. Marshaling fails only for a message that cannot marshal, which no generated Envoy message
// built in this package is; mustAny panics then.
func mustAny(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		panic(fmt.Sprintf("envoybuild: pack %T: %v", m, err))
	}
	return a
}
