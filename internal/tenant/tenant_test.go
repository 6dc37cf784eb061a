package tenant

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckTransition(t *testing.T) {
	allowed := map[[2]Status]bool{
		{Pending, Provisioning}: true, {Pending, Failed}: true, {Pending, Deleting}: true,
		{Provisioning, Active}: true, {Provisioning, Failed}: true, {Provisioning, Deleting}: true,
		{Active, Suspended}: true, {Active, Provisioning}: true, {Active, Deleting}: true,
		{Suspended, Active}: true, {Suspended, Deleting}: true,
		{Failed, Provisioning}: true, {Failed, Deleting}: true,
		{Deleting, Deleted}: true, {Deleting, Failed}: true,
	}
	for _, from := range Statuses {
		for _, to := range Statuses {
			want := allowed[[2]Status{from, to}] || (from == to && from != Deleted)
			err := CheckTransition(from, to)
			if (err == nil) != want {
				t.Errorf("CheckTransition(%s, %s) = %v, want allowed=%v", from, to, err, want)
			}
			var te *TransitionError
			if err != nil && !errors.As(err, &te) {
				t.Errorf("CheckTransition(%s, %s) error is %T, want *TransitionError", from, to, err)
			}
		}
	}
}

func TestCheckTransition_NothingReturnsToPendingAndDeletedIsTerminal(t *testing.T) {
	for _, from := range Statuses {
		if from != Pending && CheckTransition(from, Pending) == nil {
			t.Errorf("%s -> pending allowed", from)
		}
		if CheckTransition(Deleted, from) == nil {
			t.Errorf("deleted -> %s allowed", from)
		}
	}
	if CheckTransition("bogus", Active) == nil || CheckTransition(Active, "bogus") == nil {
		t.Error("unknown statuses accepted")
	}
}

func TestCheckSlug(t *testing.T) {
	tests := []struct {
		slug string
		ok   bool
	}{
		{"acme", true},
		{"acme-corp-2", true},
		{"a1b", true},
		{strings.Repeat("a", 63), true},
		{"ab", false},
		{strings.Repeat("a", 64), false},
		{"Acme", false},
		{"-acme", false},
		{"acme-", false},
		{"ac_me", false},
		{"ac.me", false},
		{"acmé", false},
		{"www", false},
		{"api", false},
		{"admin", false},
		{"mail", false},
		{"", false},
	}
	for _, tt := range tests {
		err := CheckSlug(tt.slug)
		if (err == nil) != tt.ok {
			t.Errorf("CheckSlug(%q) = %v, want ok=%v", tt.slug, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckSlug(%q) error does not wrap ErrInvalid", tt.slug)
		}
	}
}

func TestCheckID(t *testing.T) {
	if err := CheckID(NewID()); err != nil {
		t.Fatalf("NewID is not a valid id: %v", err)
	}
	for _, bad := range []string{"", "not-a-uuid", "3F1C2A9E-6B7D-4C1E-9A2F-0D5E8B7C6A41", "3f1c2a9e-6b7d-1c1e-9a2f-0d5e8b7c6a41", "{3f1c2a9e-6b7d-4c1e-9a2f-0d5e8b7c6a41}"} {
		if CheckID(bad) == nil {
			t.Errorf("CheckID(%q) accepted", bad)
		}
	}
	seen := map[string]bool{}
	for range 1000 {
		id := NewID()
		if seen[id] {
			t.Fatalf("NewID repeated %s", id)
		}
		seen[id] = true
	}
}

func TestSlugFromName(t *testing.T) {
	tests := map[string]string{
		"Acme Corp":              "acme-corp",
		"  Globex, Inc.  ":       "globex-inc",
		"Initech__Software":      "initech-software",
		"Ünïcode Name":           "n-code-name",
		strings.Repeat("x", 100): strings.Repeat("x", 63),
	}
	for name, want := range tests {
		if got := SlugFromName(name); got != want {
			t.Errorf("SlugFromName(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestValidate_NamesTheField(t *testing.T) {
	good := Tenant{ID: NewID(), Slug: "acme", Name: "Acme", Plan: "free", Model: Pool, Status: Pending}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid tenant rejected: %v", err)
	}
	tests := []struct {
		field  string
		mutate func(*Tenant)
	}{
		{"id", func(t *Tenant) { t.ID = "x" }},
		{"slug", func(t *Tenant) { t.Slug = "A" }},
		{"name", func(t *Tenant) { t.Name = " " }},
		{"plan", func(t *Tenant) { t.Plan = "" }},
		{"model", func(t *Tenant) { t.Model = "cluster" }},
		{"status", func(t *Tenant) { t.Status = "gone" }},
		{"upstream.endpoints[0]", func(t *Tenant) { t.Upstream.Endpoints = []Endpoint{{Host: "h"}} }},
	}
	for _, tt := range tests {
		bad := good
		tt.mutate(&bad)
		err := bad.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("mutating %s: got %v, want a FieldError on %s", tt.field, err, tt.field)
		}
	}
	if err := CheckPlan("gold", func(string) bool { return false }); err == nil || !strings.Contains(err.Error(), `unknown plan "gold"`) {
		t.Errorf("CheckPlan: %v", err)
	}
}
