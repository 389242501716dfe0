package session

import (
	"path"
	"slices"
)

// Policy is a guardrail over subject, tenant, scope and action: rules are evaluated in order and the
// first match decides; nothing matching is a deny.
type Policy struct {
	Rules []Rule `koanf:"rules"`
}

// Rule matches requests; each field is a glob ("*", "orders:*"); empty matches anything.
type Rule struct {
	Subject string `koanf:"subject"`
	Tenant  string `koanf:"tenant"`
	Scope   string `koanf:"scope"`
	Action  string `koanf:"action"`
	// ForSubject matches the subject acted on, for actions that act on another: the subject a
	// token is issued for, whose sessions are listed or ended. A rule that sets it never matches a
	// request that names none.
	ForSubject string `koanf:"for_subject"`
	// Effect is "allow" or "deny".
	Effect string `koanf:"effect"`
}

// PolicyRequest is what EvaluatePolicy decides on: the caller (Subject, Tenant), what it asks
// (Scope, Action), and for actions on another subject, that subject (ForSubject).
type PolicyRequest struct {
	Subject, Tenant, Scope, Action, ForSubject string
}

// Decision is a policy answer.
type Decision struct {
	Allowed bool
	// Rule is the index of the deciding rule, -1 when none matched.
	Rule   int
	Reason string
}

// EvaluatePolicy applies the configured guardrail.
func (m *Manager) EvaluatePolicy(req PolicyRequest) Decision {
	return m.cfg.Policy.Evaluate(req)
}

// Evaluate applies the rules.
func (p Policy) Evaluate(req PolicyRequest) Decision {
	for i, r := range p.Rules {
		if match(r.Subject, req.Subject) && match(r.Tenant, req.Tenant) && match(r.Scope, req.Scope) && match(r.Action, req.Action) &&
			(r.ForSubject == "" || (req.ForSubject != "" && match(r.ForSubject, req.ForSubject))) {
			allowed := r.Effect == "allow"
			reason := "denied by rule"
			if allowed {
				reason = "allowed by rule"
			}
			return Decision{Allowed: allowed, Rule: i, Reason: reason}
		}
	}
	return Decision{Rule: -1, Reason: "no rule matched (default deny)"}
}

func match(pattern, value string) bool {
	if pattern == "" || pattern == "*" {
		return true
	}
	if slices.Contains([]string{value}, pattern) {
		return true
	}
	ok, err := path.Match(pattern, value)
	return err == nil && ok
}
