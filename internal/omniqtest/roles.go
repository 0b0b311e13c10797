package omniqtest

import (
	"context"
	"testing"

	"github.com/omniq/omniq/internal/credentials"
	"github.com/omniq/omniq/internal/roles"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/jetstream/embedded"
)

// StartRoleServer starts an embedded server admitting only the role
// logins (runner, operator, submitter) it creates in data, with each
// role's permissions for OmniQ's default names and submitters in their
// own account, as omniq-runner does. The server is shut down when the
// test ends; log in with credentials.SeedFile(data, role) and the role's
// inbox prefix.
func StartRoleServer(t testing.TB, data string) *embedded.Server {
	t.Helper()
	cfg := embedded.Config{StoreDir: t.TempDir(), Port: -1}
	AddRoleLogins(t, data, &cfg)
	srv, err := embedded.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return srv
}

// AddRoleLogins creates the role logins (runner, operator, submitter) in
// data and adds them to cfg as omniq-runner does (roles.Embed), for a
// test server set up otherwise than StartRoleServer's (TLS, say).
func AddRoleLogins(t testing.TB, data string, cfg *embedded.Config) {
	t.Helper()
	keys, err := credentials.Ensure(data, "runner", "operator", "submitter")
	if err != nil {
		t.Fatal(err)
	}
	var logins []roles.Login
	for _, k := range keys {
		r, err := roles.Parse(k.Role)
		if err != nil {
			t.Fatal(err)
		}
		logins = append(logins, roles.Login{Role: r, NKey: k.Public})
	}
	if err := roles.Embed(cfg, jetstream.Config{}, logins...); err != nil {
		t.Fatal(err)
	}
}
