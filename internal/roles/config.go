package roles

import (
	"fmt"
	"strings"

	"github.com/omniq/omniq/jetstream"
)

// ServerConfig renders the three roles' permissions, for the names in cfg,
// as a nats-server configuration snippet: one variable per role
// (OMNIQ_SUBMITTER, OMNIQ_OPERATOR, OMNIQ_RUNNER) and an accounts block
// with one nkey user per role: runners and operators in OmniQAccount,
// which has JetStream and OmniQ's streams, and submitters in
// SubmittersAccount, which imports what submitters may use (Submitters).
// nkeys maps a role to its user's public nkey; a role missing from it gets
// a placeholder to replace. The snippet grants exactly what Permissions
// and Submitters say.
func ServerConfig(cfg jetstream.Config, nkeys map[Role]string) (string, error) {
	var b strings.Builder
	prefix := cfg.WithDefaults().SubjectPrefix
	fmt.Fprintf(&b, "# OmniQ roles for subject prefix %q (docs/security.md).\n", prefix)
	fmt.Fprintf(&b, "# Operators and runners must use their own inbox prefix:\n")
	fmt.Fprintf(&b, "# %s and %s.\n", OperatorInboxPrefix, RunnerInboxPrefix)
	for _, r := range All {
		p, err := Permissions(r, cfg)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s = {\n", variable(r))
		writeList(&b, "publish", p.Publish.Allow)
		writeList(&b, "subscribe", p.Subscribe.Allow)
		if p.Response != nil {
			fmt.Fprintf(&b, "  allow_responses = { max: %d, expires: %q }\n", p.Response.MaxMsgs, p.Response.Expires.String())
		}
		b.WriteString("}\n")
	}
	sub, err := Submitters(cfg)
	if err != nil {
		return "", err
	}
	user := func(r Role) {
		key := nkeys[r]
		if key == "" {
			key = "U_REPLACE_WITH_THE_" + strings.ToUpper(string(r)) + "_PUBLIC_NKEY"
		}
		fmt.Fprintf(&b, "      { nkey: %q, permissions: $%s }\n", key, variable(r))
	}
	fmt.Fprintf(&b, "accounts {\n  # OmniQ's streams, its runners and its operators.\n  %s {\n    jetstream: enabled\n    users = [\n", OmniQAccount)
	user(Operator)
	user(Runner)
	b.WriteString("    ]\n    exports = [\n")
	for _, svc := range sub.Services {
		resp := ""
		if svc.Streamed {
			resp = `, response: "stream"`
		}
		if svc.ResponseThreshold != 0 {
			resp += fmt.Sprintf(", response_threshold: %q", svc.ResponseThreshold)
		}
		fmt.Fprintf(&b, "      { service: %q%s, accounts: [%q] }\n", svc.Subject, resp, SubmittersAccount)
	}
	for _, subj := range sub.Streams {
		fmt.Fprintf(&b, "      { stream: %q, accounts: [%q] }\n", subj, SubmittersAccount)
	}
	b.WriteString("    ]\n  }\n")
	fmt.Fprintf(&b, "  # Submitters, apart: nats-server's answers to their requests stay here.\n  %s {\n    users = [\n", SubmittersAccount)
	user(Submitter)
	b.WriteString("    ]\n    imports = [\n")
	for _, svc := range sub.Services {
		fmt.Fprintf(&b, "      { service: { account: %q, subject: %q } }\n", OmniQAccount, svc.Subject)
	}
	for _, subj := range sub.Streams {
		fmt.Fprintf(&b, "      { stream: { account: %q, subject: %q } }\n", OmniQAccount, subj)
	}
	b.WriteString("    ]\n  }\n}\n")
	return b.String(), nil
}

func variable(r Role) string { return "OMNIQ_" + strings.ToUpper(string(r)) }

func writeList(b *strings.Builder, name string, subjects []string) {
	fmt.Fprintf(b, "  %s = {\n    allow = [\n", name)
	for _, s := range subjects {
		fmt.Fprintf(b, "      %q\n", s)
	}
	b.WriteString("    ]\n  }\n")
}
