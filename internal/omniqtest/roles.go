package omniqtest

import (
	"context"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/omniq/omniq/internal/credentials"
	"github.com/omniq/omniq/internal/roles"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/jetstream/embedded"
)

// StartRoleServer starts an embedded server admitting only the role
// logins (runner, operator, submitter) it creates in data, with each
// role's permissions for OmniQ's default names, as omniq-runner does. The
// server is shut down when the test ends; log in with
// credentials.SeedFile(data, role) and the role's inbox prefix.
func StartRoleServer(t testing.TB, data string) *embedded.Server {
	t.Helper()
	srv, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Port: -1, NKeys: RoleUsers(t, data)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return srv
}

// RoleUsers creates the role logins (runner, operator, submitter) in data
// and returns them as server users with each role's permissions for
// OmniQ's default names, for a test server set up otherwise than
// StartRoleServer's (TLS, say).
func RoleUsers(t testing.TB, data string) []*server.NkeyUser {
	t.Helper()
	keys, err := credentials.Ensure(data, "runner", "operator", "submitter")
	if err != nil {
		t.Fatal(err)
	}
	var users []*server.NkeyUser
	for _, k := range keys {
		r, err := roles.Parse(k.Role)
		if err != nil {
			t.Fatal(err)
		}
		p, err := roles.Permissions(r, jetstream.Config{})
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, &server.NkeyUser{Nkey: k.Public, Permissions: p})
	}
	return users
}
