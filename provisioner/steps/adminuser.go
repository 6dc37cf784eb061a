package steps

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tenantgate/tenantgate/provisioner/saga"
	"github.com/tenantgate/tenantgate/tenantdb"
)

// madeAdminUser is what the admin-user step records.
type madeAdminUser struct {
	UserID string `json:"user_id"`
}

// adminUserStep makes the tenant's profile and its first user, the owner, in the tenant's own data.
// The one-time invitation token is issued with the welcome email.
type adminUserStep struct{ d *Deps }

func (s *adminUserStep) Name() string { return AdminUser }

// adminUserID is the owner's id: fixed per tenant and email, so that a repeated do finds it.
func adminUserID(tenantID, email string) string {
	return uuid.NewSHA1(uuid.MustParse(tenantID), []byte("owner:"+email)).String()
}

func (s *adminUserStep) Do(ctx context.Context, r *saga.Run) error {
	t, err := s.d.targetOf(r.Spec)
	if err != nil {
		return err
	}
	id := adminUserID(r.Spec.TenantID, r.Spec.AdminEmail)
	gone, err := s.d.withTenantData(ctx, t, func(db beginner) error {
		return tenantdb.WithTenant(ctx, db, r.Spec.TenantID, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO `+t.table("tenant_profile")+` (tenant_id, slug, name, plan)
				VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO NOTHING`,
				r.Spec.TenantID, r.Spec.Slug, r.Spec.Name, r.Spec.Plan); err != nil {
				return fmt.Errorf("insert tenant profile: %w", err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO `+t.table("users")+` (id, tenant_id, email, role)
				VALUES ($1, $2, $3, 'owner') ON CONFLICT (tenant_id, email) DO NOTHING`,
				id, r.Spec.TenantID, r.Spec.AdminEmail); err != nil {
				return fmt.Errorf("insert admin user: %w", err)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	if gone {
		return fmt.Errorf("tenant database %s (schema %s) does not exist", t.database, t.schema)
	}
	return r.Record(AdminUser, madeAdminUser{UserID: id})
}

func (s *adminUserStep) Undo(ctx context.Context, r *saga.Run) error {
	t, err := s.d.targetOf(r.Spec)
	if err != nil {
		return err
	}
	_, err = s.d.withTenantData(ctx, t, func(db beginner) error {
		return tenantdb.WithTenant(ctx, db, r.Spec.TenantID, func(tx pgx.Tx) error {
			for _, name := range []string{"users", "tenant_profile"} {
				if _, err := tx.Exec(ctx, "DELETE FROM "+t.table(name)+" WHERE tenant_id = $1", r.Spec.TenantID); err != nil {
					return fmt.Errorf("delete from %s: %w", name, err)
				}
			}
			return nil
		})
	})
	return err
}
