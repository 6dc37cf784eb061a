package extauthz

import (
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"
)

// maxMembers bounds the members of a token header or payload.
const maxMembers = 64

var (
	errNotObject  = errors.New("not a JSON object")
	errAmbiguous  = errors.New("duplicate or case-variant member")
	errTooMany    = errors.New("too many members")
	errInvalid    = errors.New("not valid JSON")
	errNotAString = errors.New("not a string")
)

// scanObject walks the members of one JSON object and calls fn for each, with the member's raw
// value (a sub-slice of data). It rejects what a lenient decoder would resolve silently (RFC 8725
// sections 2.8 and 3.12): two members whose names are equal or differ only in case (encoding/json
// matches struct fields case-insensitively), and any name that case-folds to one of strict without
// being it exactly. Names are compared after unescaping, so "\u0069ss" is "iss".
func scanObject(data []byte, strict []string, fn func(name string, raw json.RawMessage) error) error {
	// RFC 8725 section 3.7: UTF-8 only. encoding/json would turn invalid bytes into U+FFFD and
	// could merge two distinct names into one.
	if !utf8.Valid(data) || !json.Valid(data) {
		return errInvalid
	}
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return errNotObject
	}
	i = skipSpace(data, i+1)
	if data[i] == '}' {
		return nil
	}
	var names [maxMembers]string
	n := 0
	for {
		// data is valid JSON, so a member name starts here and a colon follows it.
		end := skipString(data, i)
		name, err := memberName(data[i:end])
		if err != nil {
			return err
		}
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
		i = skipSpace(data, end)
		i = skipSpace(data, i+1) // the colon
		vEnd := skipValue(data, i)
		if err := fn(name, data[i:vEnd:vEnd]); err != nil {
			return err
		}
		i = skipSpace(data, vEnd)
		if data[i] == '}' {
			return nil
		}
		i = skipSpace(data, i+1) // the comma
	}
}

// memberName decodes a JSON string literal, unescaping only when it holds an escape.
func memberName(lit []byte) (string, error) {
	body := lit[1 : len(lit)-1]
	for _, c := range body {
		if c == '\\' {
			var s string
			if err := json.Unmarshal(lit, &s); err != nil {
				return "", err
			}
			return s, nil
		}
	}
	return string(body), nil
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string literal starting at data[i] (a quote).
func skipString(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// skipValue returns the index after the JSON value starting at data[i]; data is valid JSON.
func skipValue(data []byte, i int) int {
	depth := 0
	for i < len(data) {
		switch c := data[i]; c {
		case '"':
			i = skipString(data, i)
			if depth == 0 {
				return i
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i // the end of the enclosing object
			}
			depth--
			if depth == 0 {
				return i + 1
			}
		case ',':
			if depth == 0 {
				return i
			}
		case ' ', '\t', '\n', '\r':
			if depth == 0 {
				return i
			}
		}
		i++
	}
	return i
}

// jsonString decodes a JSON string member.
func jsonString(raw json.RawMessage) (string, error) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", errNotAString
	}
	return memberName(raw)
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
