package steps

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantgate/tenantgate/provisioner/saga"
	"github.com/tenantgate/tenantgate/tenantdb"
)

// InvitationTTL is how long an invitation token stays valid.
const InvitationTTL = 7 * 24 * time.Hour

const welcome = "welcome"

// emailStep sends the welcome email, with the owner's one-time invitation, at most once per tenant:
// the intent is stored before sending, and a send whose outcome is unknown (the process died, or
// the connection broke after the message was handed over) is never repeated. It comes after the
// tenant is active, and so is never compensated.
type emailStep struct{ d *Deps }

func (s *emailStep) Name() string { return WelcomeEmail }

func (s *emailStep) table() string { return pgx.Identifier{saga.Schema, "emails"}.Sanitize() }

func (s *emailStep) Do(ctx context.Context, r *saga.Run) error {
	log := s.d.Log.With(slog.String("tenant", r.Spec.TenantID))
	var state string
	err := s.d.State.QueryRow(ctx, `SELECT state FROM `+s.table()+` WHERE tenant_id = $1 AND kind = $2`,
		r.Spec.TenantID, welcome).Scan(&state)
	switch {
	case err == nil:
		if state == "sending" {
			// An earlier attempt stopped between intent and outcome: the email may be out.
			log.Warn("welcome email outcome unknown after an interruption; not sending again")
			_, err := s.d.State.Exec(ctx, `UPDATE `+s.table()+` SET state = 'unknown' WHERE tenant_id = $1 AND kind = $2 AND state = 'sending'`,
				r.Spec.TenantID, welcome)
			return err
		}
		return nil
	case !errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("read email state: %w", err)
	}

	tag, err := s.d.State.Exec(ctx, `INSERT INTO `+s.table()+` (tenant_id, kind, recipient, state) VALUES ($1, $2, $3, 'sending')
		ON CONFLICT DO NOTHING`, r.Spec.TenantID, welcome, r.Spec.AdminEmail)
	if err != nil {
		return fmt.Errorf("store email intent: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return nil // another attempt got there first
	}
	// Certainly not delivered: withdraw the intent so that a retry may send.
	withdraw := func(cause error) error {
		if _, err := s.d.State.Exec(context.WithoutCancel(ctx), `DELETE FROM `+s.table()+` WHERE tenant_id = $1 AND kind = $2 AND state = 'sending'`,
			r.Spec.TenantID, welcome); err != nil {
			return errors.Join(cause, err)
		}
		return cause
	}
	token, err := s.issueInvitation(ctx, r)
	if err != nil {
		return withdraw(err)
	}
	err = s.d.Mailer.Send(ctx, s.message(r, token))
	if errors.Is(err, ErrNotSent) {
		return withdraw(err)
	}
	outcome := "sent"
	if err != nil {
		log.Warn("welcome email outcome unknown; not sending again", slog.Any("error", err))
		outcome = "unknown"
	}
	if _, err := s.d.State.Exec(ctx, `UPDATE `+s.table()+` SET state = $3, sent_at = CASE WHEN $3 = 'sent' THEN now() END
		WHERE tenant_id = $1 AND kind = $2`, r.Spec.TenantID, welcome, outcome); err != nil {
		return fmt.Errorf("store email outcome: %w", err)
	}
	return nil
}

// issueInvitation gives the owner a new one-time token and stores only its hash.
func (s *emailStep) issueInvitation(ctx context.Context, r *saga.Run) (string, error) {
	t, err := s.d.targetOf(r.Spec)
	if err != nil {
		return "", err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	token := base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(token))
	var updated int64
	gone, err := s.d.withTenantData(ctx, t, func(db beginner) error {
		return tenantdb.WithTenant(ctx, db, r.Spec.TenantID, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, `UPDATE `+t.table("users")+` SET invitation_hash = $3, invitation_expires_at = $4
				WHERE tenant_id = $1 AND email = $2`, r.Spec.TenantID, r.Spec.AdminEmail, sum[:], time.Now().Add(InvitationTTL))
			updated = tag.RowsAffected()
			return err
		})
	})
	if err != nil {
		return "", fmt.Errorf("store invitation: %w", err)
	}
	if gone || updated == 0 {
		return "", errors.New("the admin user does not exist")
	}
	return token, nil
}

func (s *emailStep) message(r *saga.Run, token string) Message {
	link := strings.NewReplacer("{slug}", r.Spec.Slug, "{domain}", s.d.BaseDomain, "{token}", url.QueryEscape(token)).
		Replace(s.d.Mailer.cfg.InviteURL)
	return Message{
		To:      r.Spec.AdminEmail,
		Subject: "Welcome to " + r.Spec.Name,
		Body: fmt.Sprintf("Hello,\n\nyour workspace %s is ready at https://%s.%s.\n\n"+
			"Set up your account with this link, valid for %d days and usable once:\n%s\n",
			r.Spec.Name, r.Spec.Slug, s.d.BaseDomain, int(InvitationTTL.Hours()/24), link),
	}
}

// Undo cannot take an email back; the step comes after the pivot and is never compensated.
func (s *emailStep) Undo(context.Context, *saga.Run) error { return nil }
