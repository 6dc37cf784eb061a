package steps

import (
	"net/mail"
	"strings"
	"testing"
)

func TestRender_NoHeaderCanBeInjectedThroughTheSubject(t *testing.T) {
	from := &mail.Address{Name: "Tenantgate", Address: "no-reply@tenants.example"}
	raw := string(render(from, Message{To: "owner@acme.example", Subject: "Welcome to Acme\r\nBcc: victim@example.com", Body: "line one\nline two\n"}))
	head, body, ok := strings.Cut(raw, "\r\n\r\n")
	if !ok {
		t.Fatalf("no header/body separator:\n%q", raw)
	}
	for _, line := range strings.Split(head, "\r\n") {
		if strings.HasPrefix(strings.ToLower(line), "bcc:") {
			t.Fatalf("injected header: %q", line)
		}
	}
	if !strings.Contains(head, "Subject: Welcome to Acme  Bcc: victim@example.com") {
		t.Errorf("subject not kept on one line:\n%s", head)
	}
	if body != "line one\r\nline two\r\n" {
		t.Errorf("body line endings: %q", body)
	}
	for _, h := range []string{"From: \"Tenantgate\" <no-reply@tenants.example>", "To: <owner@acme.example>", "Message-ID: <", "@tenants.example>", "Content-Type: text/plain; charset=utf-8"} {
		if !strings.Contains(head, h) {
			t.Errorf("header %q missing:\n%s", h, head)
		}
	}
}

func TestNames_StayValidAndFixedPerTenant(t *testing.T) {
	id := "5b0f3a4e-8f0c-4c1e-9d7a-2f5c3b1a9e10"
	if got := identName("tenant_", "acme-co", id); got != "tenant_acme_co" {
		t.Errorf("identName: %q", got)
	}
	long := strings.Repeat("a", 60)
	if got := identName("tenant_", long, id); got != "tenant_5b0f3a4e8f0c4c1e9d7a2f5c3b1a9e10" {
		t.Errorf("identName of a long slug: %q", got)
	}
	if got := namespaceName("tenant-", "acme-co", id); got != "tenant-acme-co" {
		t.Errorf("namespaceName: %q", got)
	}
	if got := namespaceName("tenant-", long, id); len(got) > 63 || !strings.HasPrefix(got, "tenant-5b0f3a4e") {
		t.Errorf("namespaceName of a long slug: %q", got)
	}
}
