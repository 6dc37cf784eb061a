package extauthz

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

func TestScanObject_RejectsAmbiguity(t *testing.T) {
	cases := []struct {
		name string
		json string
		want error
	}{
		{"plain object", `{"iss":"a","aud":["x","y"],"n":{"a":[1,{"b":"}"}]},"t":true}`, nil},
		{"whitespace everywhere", " {\n\t\"iss\" : \"a\" ,\r\n \"x\" : null } ", nil},
		{"empty object", `{}`, nil},
		{"duplicate member", `{"iss":"a","iss":"b"}`, errAmbiguous},
		{"case-variant members", `{"tenant_id":"a","TENANT_ID":"b"}`, errAmbiguous},
		{"escaped duplicate", `{"iss":"a","\u0069ss":"b"}`, errAmbiguous},
		{"case-variant of a strict name", `{"Iss":"a"}`, errAmbiguous},
		{"unicode fold of a strict name", `{"ſub":"a"}`, errAmbiguous},
		{"kelvin sign folds to k", `{"kid":"a","\u212aid":"b"}`, errAmbiguous},
		{"array", `["iss"]`, errNotObject},
		{"trailing data", `{"iss":"a"}{}`, errInvalid},
		{"not JSON", `{iss:"a"}`, errInvalid},
		{"invalid UTF-8 names that decode alike", "{\"\xff\":1,\"\xfe\":2}", errInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := scanObject([]byte(tc.json), []string{"iss", "sub"}, func(string, json.RawMessage) error { return nil })
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// FuzzScanObject: on any input the scanner accepts, it sees exactly the members encoding/json sees.
func FuzzScanObject(f *testing.F) {
	for _, s := range []string{`{"a":1,"b":[1,2,{"c":"d"}],"e":{"f":null}}`, `{"\u0061":"\"}"}`, `{"x":"y" , "z" : -1.5e3}`, `{}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got := map[string]json.RawMessage{}
		err := scanObject(data, nil, func(name string, raw json.RawMessage) error {
			got[name] = raw
			return nil
		})
		if err != nil {
			return
		}
		var want map[string]json.RawMessage
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatalf("scanner accepted what encoding/json rejects: %v", err)
		}
		if len(got) != len(want) {
			t.Fatalf("members: got %d, want %d", len(got), len(want))
		}
		for k, v := range want {
			if !bytes.Equal(bytes.TrimSpace(got[k]), bytes.TrimSpace(v)) {
				t.Fatalf("member %q: got %s, want %s", k, got[k], v)
			}
		}
	})
}
