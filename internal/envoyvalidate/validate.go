package envoyvalidate

import (
	"errors"
	"fmt"
	"os"
	"reflect"

	"encoding/json"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
)

// allValidator is what protoc-gen-validate generates on every Envoy message.
type allValidator interface{ ValidateAll() error }

// ValidateMessage deep-validates m: ValidateAll on m and on the content of every Any inside it,
// recursively (a typed_config inside a typed_config included), then a protojson round trip that must
// give back an equal message.
func ValidateMessage(m proto.Message) error {
	if m == nil {
		return errors.New("nil message")
	}
	if err := walk(m.ProtoReflect(), string(m.ProtoReflect().Descriptor().FullName())); err != nil {
		return err
	}
	return roundTrip(m)
}

// ValidateBootstrapFile reads an Envoy bootstrap in YAML or JSON, decodes it strictly (unknown fields
// are errors) into a Bootstrap and deep-validates it with ValidateMessage.
func ValidateBootstrapFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read bootstrap: %w", err)
	}
	b, err := DecodeBootstrap(data)
	if err != nil {
		return fmt.Errorf("bootstrap %s: %w", path, err)
	}
	if err := ValidateMessage(b); err != nil {
		return fmt.Errorf("bootstrap %s: %w", path, err)
	}
	return nil
}

// DecodeBootstrap decodes a YAML or JSON bootstrap strictly into a Bootstrap.
func DecodeBootstrap(data []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := YAMLToJSON(data)
	if err != nil {
		return nil, err
	}
	b := &bootstrapv3.Bootstrap{}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, b); err != nil {
		return nil, fmt.Errorf("decode as envoy.config.bootstrap.v3.Bootstrap: %w", err)
	}
	return b, nil
}

// YAMLToJSON converts one YAML (or JSON) document to JSON.
func YAMLToJSON(data []byte) ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	js, err := json.Marshal(jsonable(doc))
	if err != nil {
		return nil, fmt.Errorf("YAML to JSON: %w", err)
	}
	return js, nil
}

// jsonable turns the map[any]any YAML may produce into map[string]any.
func jsonable(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = jsonable(e)
		}
		return v
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[fmt.Sprint(k)] = jsonable(e)
		}
		return out
	case []any:
		for i, e := range v {
			v[i] = jsonable(e)
		}
		return v
	}
	return v
}

// walk validates the message at path and every message below it, unpacking Any values.
func walk(m protoreflect.Message, path string) error {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := unpack(a)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return walk(inner.ProtoReflect(), path+"("+a.GetTypeUrl()+")")
	}
	if v, ok := m.Interface().(allValidator); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		at := path + "." + string(fd.Name())
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = walk(l.Get(i).Message(), fmt.Sprintf("%s[%d]", at, i))
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				err = walk(mv.Message(), fmt.Sprintf("%s[%v]", at, k.Interface()))
				return err == nil
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			err = walk(v.Message(), at)
		}
		return err == nil
	})
	return err
}

func unpack(a *anypb.Any) (proto.Message, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(a.GetTypeUrl())
	if err != nil {
		return nil, fmt.Errorf("unknown type %q in Any: %w", a.GetTypeUrl(), err)
	}
	inner := mt.New().Interface()
	if err := (proto.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(a.GetValue(), inner); err != nil {
		return nil, fmt.Errorf("unpack %s: %w", a.GetTypeUrl(), err)
	}
	if len(inner.ProtoReflect().GetUnknown()) > 0 {
		return nil, fmt.Errorf("unpack %s: unknown fields", a.GetTypeUrl())
	}
	return inner, nil
}

func roundTrip(m proto.Message) error {
	js, err := protojson.Marshal(m)
	if err != nil {
		return fmt.Errorf("protojson marshal %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	back := m.ProtoReflect().New().Interface()
	if err := protojson.Unmarshal(js, back); err != nil {
		return fmt.Errorf("protojson unmarshal %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	// Compared as JSON: an Any's bytes may legitimately differ (map order) for equal content.
	again, err := protojson.Marshal(back)
	if err != nil {
		return fmt.Errorf("protojson marshal %s again: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	if !jsonEqual(js, again) {
		return fmt.Errorf("%s does not survive a protojson round trip", m.ProtoReflect().Descriptor().FullName())
	}
	return nil
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
