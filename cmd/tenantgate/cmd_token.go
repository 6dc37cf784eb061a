package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/tenantgate/tenantgate/extauthz"
	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

type tokenFlags struct {
	keyPath     string
	jwksPath    string
	configPath  string
	tenant      string
	subject     string
	audience    string
	tenantClaim string
	scope       string
	ttl         time.Duration
}

// newTokenCmd mints development tokens. Their key is made on first use; `serve` trusts them only
// when the operator lists the dev issuer with the key's public JWKS in authz.issuers.
func newTokenCmd() *cobra.Command {
	var f tokenFlags
	cmd := &cobra.Command{
		Use:   "token --tenant <id|slug> | --scope <scopes>",
		Short: "Mint a development token for a tenant (trusted only where authz.issuers lists the dev issuer)",
		Long: `Mint a development token for a tenant, signed by a local development key.

The key is created on first use (--key, mode 0600) together with its public JWKS (--jwks).
No server trusts it by default: add the issuer to the config of 'tenantgate serve':

  authz:
    issuers:
      - issuer: ` + extauthz.DevIssuer + `
        audiences: [tenantgate]
        jwks_file: <the --jwks path>

A slug is resolved to the tenant id through the tenants file of --config.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runToken(cmd, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.keyPath, "key", "tenantgate-dev-key.json", "development private key (created if missing)")
	fl.StringVar(&f.jwksPath, "jwks", "tenantgate-dev-jwks.json", "public JWKS of the development key (written with a new key)")
	fl.StringVar(&f.configPath, "config", "", "config file whose tenants_file resolves slugs")
	fl.StringVar(&f.tenant, "tenant", "", "tenant id, or slug to resolve through the tenants file (required unless --scope is given)")
	fl.StringVar(&f.scope, "scope", "", "space-separated scopes, such as tenantgate:admin for the provisioner API")
	fl.StringVar(&f.subject, "subject", "dev", "token subject (sub)")
	fl.StringVar(&f.audience, "audience", "tenantgate", "token audience (aud)")
	fl.StringVar(&f.tenantClaim, "tenant-claim", config.DefaultTenantClaim, "name of the tenant claim")
	fl.DurationVar(&f.ttl, "ttl", time.Hour, "token lifetime (at most 24h)")
	return cmd
}

func runToken(cmd *cobra.Command, f *tokenFlags) error {
	if f.ttl <= 0 || f.ttl > 24*time.Hour {
		return errors.New("--ttl must be between 1s and 24h")
	}
	if f.tenant == "" && f.scope == "" {
		return errors.New("--tenant is required (or --scope for a token without a tenant, such as an admin token)")
	}
	var id string
	if f.tenant != "" {
		var err error
		if id, err = resolveTenant(f); err != nil {
			return err
		}
	}
	key, err := extauthz.LoadDevKey(f.keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		if key, err = extauthz.GenerateDevKey(); err != nil {
			return err
		}
		if err := key.Save(f.keyPath, f.jwksPath); err != nil {
			return err
		}
		jwks, _ := filepath.Abs(f.jwksPath)
		fmt.Fprintf(cmd.ErrOrStderr(), "created development key %s (kid %s); to trust it, add to the serve config:\n"+
			"authz:\n  issuers:\n    - issuer: %s\n      audiences: [%s]\n      jwks_file: %s\n",
			f.keyPath, key.ID(), extauthz.DevIssuer, f.audience, jwks)
	} else if err != nil {
		return err
	}
	tok, err := key.Mint(extauthz.DevToken{
		Audience: f.audience, Subject: f.subject, TenantClaim: f.tenantClaim, Tenant: id, Scope: f.scope, TTL: f.ttl,
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
	return err
}

// resolveTenant returns the tenant id: the flag itself when it is an id, else the id of the slug
// in the tenants file of the config.
func resolveTenant(f *tokenFlags) (string, error) {
	if tenant.CheckID(f.tenant) == nil {
		return f.tenant, nil
	}
	if err := tenant.CheckSlug(f.tenant); err != nil {
		return "", fmt.Errorf("--tenant: neither a tenant id nor a slug: %w", err)
	}
	cfg, err := config.Load(f.configPath, os.Getenv)
	if err != nil {
		return "", err
	}
	if cfg.TenantsFile == "" {
		return "", errors.New("--tenant is a slug but no tenants file is configured; pass the tenant id")
	}
	seed, err := registry.LoadSeedFile(cfg.TenantsFile, cfg.KnownPlan)
	if err != nil {
		return "", err
	}
	for _, t := range seed {
		if t.Slug == f.tenant {
			return t.ID, nil
		}
	}
	return "", fmt.Errorf("--tenant: no tenant with slug %q in %s", f.tenant, cfg.TenantsFile)
}
