package steps

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/mail"
	"net/smtp"
	"strings"
	"time"

	"github.com/tenantgate/tenantgate/internal/config"
)

// ErrNotSent wraps a send error after which the message was certainly not delivered (the server
// refused it, or the connection failed before the message was handed over): sending again is safe.
// Any other send error leaves delivery unknown.
var ErrNotSent = errors.New("email not sent")

// Mailer sends email over SMTP.
type Mailer struct {
	cfg     config.Email
	tls     *tls.Config
	timeout time.Duration
}

// NewMailer returns a Mailer for cfg; tlsCfg (may be nil) is used for STARTTLS.
func NewMailer(cfg config.Email, tlsCfg *tls.Config) *Mailer {
	return &Mailer{cfg: cfg, tls: tlsCfg, timeout: 30 * time.Second}
}

// Message is one plain-text email.
type Message struct {
	To      string
	Subject string
	Body    string
}

// Send delivers msg to the SMTP server.
func (m *Mailer) Send(ctx context.Context, msg Message) error {
	host, _, err := net.SplitHostPort(m.cfg.SMTPAddr)
	if err != nil {
		return fmt.Errorf("%w: smtp address: %w", ErrNotSent, err)
	}
	from, err := mail.ParseAddress(m.cfg.From)
	if err != nil {
		return fmt.Errorf("%w: from address: %w", ErrNotSent, err)
	}
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", m.cfg.SMTPAddr)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	defer c.Close()
	if err := m.prepare(c, host, from.Address, msg.To); err != nil {
		return fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	if _, err := w.Write(render(from, msg)); err != nil {
		return fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	// From here the server may have the message: a failure no longer proves it was not delivered.
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of message: %w", err)
	}
	_ = c.Quit()
	return nil
}

func (m *Mailer) prepare(c *smtp.Client, host, from, to string) error {
	if err := c.Hello("tenantgate"); err != nil {
		return err
	}
	if m.cfg.StartTLS {
		cfg := m.tls
		if cfg == nil {
			cfg = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		}
		if err := c.StartTLS(cfg); err != nil {
			return fmt.Errorf("starttls: %w", err)
		}
	}
	if m.cfg.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", m.cfg.Username, m.cfg.Password.Value(), host)); err != nil {
			return fmt.Errorf("auth: %w", err)
		}
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	return c.Rcpt(to)
}

// render writes msg with its headers; the subject is encoded and stripped of line breaks, so no
// header can be injected through it.
func render(from *mail.Address, msg Message) []byte {
	var id [12]byte
	_, _ = rand.Read(id[:])
	domain := "tenantgate"
	if at := strings.LastIndexByte(from.Address, '@'); at >= 0 {
		domain = from.Address[at+1:]
	}
	subject := strings.NewReplacer("\r", " ", "\n", " ").Replace(msg.Subject)
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\n", from.String())
	fmt.Fprintf(&b, "To: %s\r\n", (&mail.Address{Address: msg.To}).String())
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", subject))
	fmt.Fprintf(&b, "Date: %s\r\n", time.Now().UTC().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@%s>\r\n", hex.EncodeToString(id[:]), domain)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(strings.ReplaceAll(strings.ReplaceAll(msg.Body, "\r\n", "\n"), "\n", "\r\n"))
	return []byte(b.String())
}
