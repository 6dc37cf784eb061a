package extauthz

import (
	"errors"
	"net/http"
)

// Reason is why a request was allowed or denied. The deny response, the metric label and the log
// line all take it from here; the set is fixed, so the metric's cardinality is bounded.
type Reason uint8

// The reasons. Credential problems answer 401, tenant problems 403, missing state 503.
const (
	ReasonOK Reason = iota

	// 401: the credential.
	ReasonMissingCredential
	ReasonMultipleCredentials
	ReasonTokenTooLarge
	ReasonMalformedToken
	ReasonAmbiguousJSON
	ReasonForbiddenHeader // crit, jku, x5u, jwk, x5c
	ReasonBadType
	ReasonUnknownIssuer
	ReasonAlgorithmNotAllowed
	ReasonKeyIDRequired
	ReasonUnknownKey
	ReasonKeyMismatch // the key's algorithm or type does not fit the token's alg
	ReasonBadSignature
	ReasonExpired
	ReasonNotYetValid
	ReasonIssuedInFuture
	ReasonLifetimeTooLong
	ReasonBadAudience
	ReasonBadClaims
	ReasonBadTenantClaim

	// 403: the tenant.
	ReasonTenantSuspended
	ReasonTenantDenied // unknown, deleted, not active, bound elsewhere: one answer, no oracle
	ReasonPlanNotAllowed

	// 503: fail closed.
	ReasonKeysUnavailable
	ReasonTenantsUnavailable

	reasonCount
)

var reasonNames = [reasonCount]string{
	ReasonOK:                  "ok",
	ReasonMissingCredential:   "missing_credential",
	ReasonMultipleCredentials: "multiple_credentials",
	ReasonTokenTooLarge:       "token_too_large",
	ReasonMalformedToken:      "malformed_token",
	ReasonAmbiguousJSON:       "ambiguous_json",
	ReasonForbiddenHeader:     "forbidden_header",
	ReasonBadType:             "bad_type",
	ReasonUnknownIssuer:       "unknown_issuer",
	ReasonAlgorithmNotAllowed: "algorithm_not_allowed",
	ReasonKeyIDRequired:       "kid_required",
	ReasonUnknownKey:          "unknown_kid",
	ReasonKeyMismatch:         "key_mismatch",
	ReasonBadSignature:        "bad_signature",
	ReasonExpired:             "expired",
	ReasonNotYetValid:         "not_yet_valid",
	ReasonIssuedInFuture:      "issued_in_future",
	ReasonLifetimeTooLong:     "lifetime_too_long",
	ReasonBadAudience:         "bad_audience",
	ReasonBadClaims:           "bad_claims",
	ReasonBadTenantClaim:      "bad_tenant_claim",
	ReasonTenantSuspended:     "tenant_suspended",
	ReasonTenantDenied:        "tenant_denied",
	ReasonPlanNotAllowed:      "plan_not_allowed",
	ReasonKeysUnavailable:     "keys_unavailable",
	ReasonTenantsUnavailable:  "tenants_unavailable",
}

// String is the reason's metric label.
func (r Reason) String() string {
	if r < reasonCount {
		return reasonNames[r]
	}
	return "unknown"
}

// HTTPStatus is the status Envoy answers the client with.
func (r Reason) HTTPStatus() int {
	switch {
	case r == ReasonOK:
		return http.StatusOK
	case r >= ReasonTenantSuspended && r <= ReasonPlanNotAllowed:
		return http.StatusForbidden
	case r == ReasonKeysUnavailable || r == ReasonTenantsUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusUnauthorized
	}
}

// code is what the client learns: the RFC 6750 error for credential problems, a tenant code for
// tenant problems. Finer reasons stay in the metric and the debug log.
func (r Reason) code() string {
	switch r {
	case ReasonMissingCredential:
		return "missing_credential"
	case ReasonTenantSuspended:
		return "tenant_suspended"
	case ReasonPlanNotAllowed:
		return "plan_not_allowed"
	case ReasonTenantDenied:
		return "tenant_denied"
	case ReasonKeysUnavailable, ReasonTenantsUnavailable:
		return "temporarily_unavailable"
	}
	return "invalid_token"
}

// Error is a denial with its reason. Verify and Check return it; errors.As finds it.
type Error struct {
	Reason Reason
	Err    error // the detail, for the debug log only; never holds the token
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Reason.String() + ": " + e.Err.Error()
	}
	return e.Reason.String()
}

func (e *Error) Unwrap() error { return e.Err }

func fail(r Reason, err error) *Error { return &Error{Reason: r, Err: err} }

// ReasonOf returns the reason carried by err (ReasonOK for nil, ReasonMalformedToken for an error
// without one).
func ReasonOf(err error) Reason {
	if err == nil {
		return ReasonOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonMalformedToken
}
