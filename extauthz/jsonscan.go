package extauthz

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
)

// maxMembers bounds the members of a token header or payload.
const maxMembers = 64

var (
	errNotObject  = errors.New("not a JSON object")
	errAmbiguous  = errors.New("duplicate or case-variant member")
	errTooMany    = errors.New("too many members")
	errTrailing   = errors.New("data after the JSON object")
	errNotAString = errors.New("not a string")
)

// scanObject walks the members of one JSON object and calls fn for each. It rejects what a lenient
// decoder would resolve silently (RFC 8725 section 3.12 and 2.8): two members whose names are equal
// or differ only in case (encoding/json matches struct fields case-insensitively), and any name that
// case-folds to one of strict without being it exactly.
func scanObject(data []byte, strict []string, fn func(name string, raw json.RawMessage) error) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errNotObject
	}
	var names [maxMembers]string
	n := 0
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := tok.(string)
		if n == maxMembers {
			return errTooMany
		}
		for _, seen := range names[:n] {
			if strings.EqualFold(seen, name) {
				return errAmbiguous
			}
		}
		for _, s := range strict {
			if name != s && strings.EqualFold(name, s) {
				return errAmbiguous
			}
		}
		names[n] = name
		n++
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		if err := fn(name, raw); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errTrailing
	}
	return nil
}

// jsonString decodes a JSON string member.
func jsonString(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", errNotAString
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", err
	}
	return s, nil
}

// hasControl reports whether s holds a control character (C0, DEL or C1) or invalid UTF-8.
func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == '\uFFFD' {
			return true
		}
	}
	return false
}
