package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// KeyError is a configuration error at one key, such as "plans.free.windows[0].period".
type KeyError struct {
	Key    string
	Reason string
}

func (e *KeyError) Error() string { return "config: " + e.Key + ": " + e.Reason }

func keyErr(key, format string, args ...any) error {
	return &KeyError{Key: key, Reason: fmt.Sprintf(format, args...)}
}

// decodeInto decodes a YAML document into v (a pointer to a struct), over the values v already holds
// (the defaults). Unknown keys and values of the wrong type are errors that name their key.
func decodeInto(data []byte, v any) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config: not valid YAML: %w", err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil // empty file: defaults
	}
	return decodeNode(doc.Content[0], reflect.ValueOf(v).Elem(), "")
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func decodeNode(n *yaml.Node, v reflect.Value, key string) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
		if err := n.Decode(v.Addr().Interface()); err != nil {
			return keyErr(display(key), "%s", cleanYAMLError(err))
		}
		return nil
	}
	switch v.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return keyErr(display(key), "must be a mapping")
		}
		fields := yamlFields(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			name := n.Content[i].Value
			idx, ok := fields[name]
			if !ok {
				return keyErr(join(key, name), "unknown key (line %d)", n.Content[i].Line)
			}
			if err := decodeNode(n.Content[i+1], v.Field(idx), join(key, name)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return keyErr(display(key), "must be a mapping")
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			name := n.Content[i].Value
			elem := reflect.New(v.Type().Elem()).Elem()
			if existing := v.MapIndex(reflect.ValueOf(name).Convert(v.Type().Key())); existing.IsValid() {
				elem.Set(existing)
			}
			if err := decodeNode(n.Content[i+1], elem, join(key, name)); err != nil {
				return err
			}
			v.SetMapIndex(reflect.ValueOf(name).Convert(v.Type().Key()), elem)
		}
		return nil
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return keyErr(display(key), "must be a list")
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := decodeNode(item, s.Index(i), key+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return decodeNode(n, v.Elem(), key)
	default:
		if n.Kind != yaml.ScalarNode {
			return keyErr(display(key), "must be a single value")
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			return keyErr(display(key), "%s", cleanYAMLError(err))
		}
		return nil
	}
}

func yamlFields(t reflect.Type) map[string]int {
	out := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = i
	}
	return out
}

func join(key, name string) string {
	if key == "" {
		return name
	}
	return key + "." + name
}

func display(key string) string {
	if key == "" {
		return "(top level)"
	}
	return key
}

func cleanYAMLError(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		return strings.Join(te.Errors, "; ")
	}
	return err.Error()
}

// Duration is a time.Duration written as "250ms", "10s", "1h".
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("must be a duration such as 250ms, 10s or 1h")
	}
	parsed, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("invalid duration %q (write it as 250ms, 10s or 1h)", n.Value)
	}
	*d = Duration(parsed)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }
