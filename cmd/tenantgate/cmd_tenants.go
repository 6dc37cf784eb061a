package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tenantgate/tenantgate/provisioner/api"
)

// tenantsClient speaks the provisioner's HTTP API.
type tenantsClient struct {
	server string
	token  string
	output string
	wait   bool
	http   *http.Client
	out    io.Writer
}

func newTenantsCmd() *cobra.Command {
	c := &tenantsClient{http: &http.Client{Timeout: 30 * time.Second}}
	cmd := &cobra.Command{
		Use:   "tenants",
		Short: "Create, inspect and manage tenants through the provisioner API",
		Long: "A client of the provisioner's HTTP API. The admin token comes from --token or\n" +
			"TENANTGATE_ADMIN_TOKEN (prefer the variable: a flag ends up in shell history).",
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			c.out = cmd.OutOrStdout()
			if c.token == "" {
				c.token = os.Getenv("TENANTGATE_ADMIN_TOKEN")
			}
			if c.token == "" {
				return errors.New("an admin token is required: set TENANTGATE_ADMIN_TOKEN or --token")
			}
			if c.output != "table" && c.output != "json" {
				return fmt.Errorf("--output must be table or json (got %q)", c.output)
			}
			return nil
		},
	}
	server := os.Getenv("TENANTGATE_SERVER")
	if server == "" {
		server = "http://127.0.0.1:8080"
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&c.server, "server", server, "provisioner API base URL (also TENANTGATE_SERVER)")
	pf.StringVar(&c.token, "token", "", "admin bearer token (default $TENANTGATE_ADMIN_TOKEN)")
	pf.StringVarP(&c.output, "output", "o", "table", "table or json")
	cmd.AddCommand(c.createCmd(), c.getCmd(), c.listCmd(), c.setPlanCmd(),
		c.actionCmd("suspend", "Stop a tenant's traffic at once", "POST", "/suspend", false),
		c.actionCmd("resume", "Let a suspended tenant's traffic through again", "POST", "/resume", false),
		c.actionCmd("retry", "Start a failed tenant's saga again", "POST", "/retry", true),
		c.actionCmd("delete", "Delete a tenant (its id and slug stay reserved)", "DELETE", "", true),
	)
	return cmd
}

func (c *tenantsClient) createCmd() *cobra.Command {
	var req struct {
		Name       string `json:"name"`
		Slug       string `json:"slug,omitempty"`
		Plan       string `json:"plan"`
		Model      string `json:"model"`
		AdminEmail string `json:"admin_email"`
	}
	var key string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a tenant and follow its provisioning",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if key == "" {
				key = randomKey() // a retried command with --idempotency-key makes one tenant only
			}
			body, err := json.Marshal(req)
			if err != nil {
				return err
			}
			var t api.TenantJSON
			if err := c.call(cmd.Context(), "POST", "/v1/tenants", body, &t, "Idempotency-Key", key); err != nil {
				return err
			}
			return c.follow(cmd.Context(), t)
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Name, "name", "", "display name (required)")
	f.StringVar(&req.Slug, "slug", "", "DNS label (default: derived from the name)")
	f.StringVar(&req.Plan, "plan", "", "plan name (required)")
	f.StringVar(&req.Model, "model", "pool", "tenancy model: pool, namespace, bridge or silo")
	f.StringVar(&req.AdminEmail, "admin-email", "", "the first user's email (required)")
	f.StringVar(&key, "idempotency-key", "", "Idempotency-Key to send (default: a random one)")
	f.BoolVar(&c.wait, "wait", true, "follow the saga until it ends")
	return cmd
}

func (c *tenantsClient) getCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show a tenant and its latest saga",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var t api.TenantJSON
			if err := c.call(cmd.Context(), "GET", "/v1/tenants/"+url.PathEscape(args[0]), nil, &t); err != nil {
				return err
			}
			return c.print(t)
		},
	}
}

func (c *tenantsClient) listCmd() *cobra.Command {
	var status, plan, model string
	var limit int
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tenants",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			for k, v := range map[string]string{"status": status, "plan": plan, "model": model} {
				if v != "" {
					q.Set(k, v)
				}
			}
			if limit > 0 {
				q.Set("limit", fmt.Sprint(limit))
			}
			var tenants []api.TenantJSON
			for {
				var page api.ListJSON
				if err := c.call(cmd.Context(), "GET", "/v1/tenants?"+q.Encode(), nil, &page); err != nil {
					return err
				}
				tenants = append(tenants, page.Tenants...)
				if !all || page.Next == "" {
					if page.Next != "" && c.output == "table" {
						defer fmt.Fprintf(c.out, "(more: --all, or list from after %s)\n", page.Next)
					}
					break
				}
				q.Set("after", page.Next)
			}
			if c.output == "json" {
				return json.NewEncoder(c.out).Encode(tenants)
			}
			w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tSLUG\tPLAN\tMODEL\tSTATUS\tNAME")
			for _, t := range tenants {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Slug, t.Plan, t.Model, t.Status, t.Name)
			}
			return w.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&status, "status", "", "only these statuses (comma-separated)")
	f.StringVar(&plan, "plan", "", "only this plan")
	f.StringVar(&model, "model", "", "only this tenancy model")
	f.IntVar(&limit, "limit", 0, "page size")
	f.BoolVar(&all, "all", false, "fetch every page")
	return cmd
}

func (c *tenantsClient) setPlanCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "set-plan ID PLAN",
		Short: "Move a tenant to another plan",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, _ := json.Marshal(map[string]string{"plan": args[1]})
			var t api.TenantJSON
			if err := c.call(cmd.Context(), "PATCH", "/v1/tenants/"+url.PathEscape(args[0]), body, &t); err != nil {
				return err
			}
			return c.print(t)
		},
	}
}

func (c *tenantsClient) actionCmd(name, short, method, suffix string, saga bool) *cobra.Command {
	cmd := &cobra.Command{
		Use:   name + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var t api.TenantJSON
			if err := c.call(cmd.Context(), method, "/v1/tenants/"+url.PathEscape(args[0])+suffix, nil, &t); err != nil {
				return err
			}
			if saga {
				return c.follow(cmd.Context(), t)
			}
			return c.print(t)
		},
	}
	if saga {
		cmd.Flags().BoolVar(&c.wait, "wait", true, "follow the saga until it ends")
	}
	return cmd
}

// follow prints the saga's progress, step by step, until it ends; it fails when the tenant ends failed.
func (c *tenantsClient) follow(ctx context.Context, t api.TenantJSON) error {
	if !c.wait {
		return c.print(t)
	}
	if c.output == "table" {
		fmt.Fprintf(c.out, "tenant %s (%s): %s\n", t.ID, t.Slug, t.Status)
	}
	last := ""
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		if s := t.Saga; s != nil && c.output == "table" {
			line := progressLine(t)
			if line != last {
				fmt.Fprintln(c.out, line)
				last = line
			}
		}
		if t.Saga != nil && t.Saga.State != "running" && t.Saga.State != "compensating" && t.Status != "pending" {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if err := c.call(ctx, "GET", "/v1/tenants/"+t.ID, nil, &t); err != nil {
			return err
		}
	}
	if err := c.print(t); err != nil {
		return err
	}
	if t.Status == "failed" {
		return fmt.Errorf("tenant %s: %s saga failed: %s", t.ID, t.Saga.Kind, firstNonEmpty(t.LastError, t.Saga.LastError))
	}
	if t.Saga.State == "failed" {
		fmt.Fprintf(c.out, "warning: the %s saga gave up after the tenant became %s: %s\n", t.Saga.Kind, t.Status, t.Saga.LastError)
	}
	return nil
}

func progressLine(t api.TenantJSON) string {
	s := t.Saga
	n := len(s.Steps)
	switch {
	case s.State == "done" || s.State == "failed":
		return fmt.Sprintf("  %s saga %s", s.Kind, s.State)
	case s.Step < 0 || s.Step >= n:
		return fmt.Sprintf("  %s saga %s", s.Kind, s.State)
	}
	verb := "doing"
	if s.State == "compensating" {
		verb = "undoing"
	}
	line := fmt.Sprintf("  [%d/%d] %s %s", s.Step+1, n, verb, s.Steps[s.Step])
	if s.Attempt > 0 && s.LastError != "" {
		line += fmt.Sprintf(" (attempt %d failed: %s)", s.Attempt, s.LastError)
	}
	return line
}

func (c *tenantsClient) print(t api.TenantJSON) error {
	if c.output == "json" {
		return json.NewEncoder(c.out).Encode(t)
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "id:\t%s\nslug:\t%s\nname:\t%s\nplan:\t%s\nmodel:\t%s\nstatus:\t%s\n", t.ID, t.Slug, t.Name, t.Plan, t.Model, t.Status)
	r := t.Resources
	for _, kv := range [][2]string{{"database", r.Database}, {"schema", r.Schema}, {"namespace", r.Namespace}, {"domain", r.Domain}, {"last error", t.LastError}} {
		if kv[1] != "" {
			fmt.Fprintf(w, "%s:\t%s\n", kv[0], kv[1])
		}
	}
	if s := t.Saga; s != nil {
		fmt.Fprintf(w, "saga:\t%s %s (%s)\n", s.Kind, s.State, strings.Join(s.Steps, " > "))
	}
	return w.Flush()
}

// call sends one API request and decodes the JSON answer into out; a problem answer becomes an error
// that names the field at fault.
func (c *tenantsClient) call(ctx context.Context, method, path string, body []byte, out any, headers ...string) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.server, "/")+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("provisioner API: %w", err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("provisioner API: %w", err)
	}
	if res.StatusCode >= 300 {
		var p api.Problem
		if json.Unmarshal(raw, &p) == nil && p.Status != 0 {
			msg := p.Detail
			if msg == "" {
				msg = p.Title
			}
			return fmt.Errorf("%s %s: %d %s", method, path, p.Status, msg)
		}
		return fmt.Errorf("%s %s: %s", method, path, res.Status)
	}
	return json.Unmarshal(raw, out)
}

func randomKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
