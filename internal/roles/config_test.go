package roles_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/omniq/omniq/internal/roles"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/jetstream/embedded"
)

// The rendered snippet, read by nats-server itself, grants each user
// exactly its role's permissions.
func TestServerConfigGrantsThePermissions(t *testing.T) {
	t.Parallel()
	for _, cfg := range []jetstream.Config{{}, {SubjectPrefix: "jobs", TasksStream: "T", DLQStream: "D", StateBucket: "S", FunctionsBucket: "F"}} {
		keys := map[roles.Role]string{}
		for _, r := range roles.All {
			kp, err := nkeys.CreateUser()
			if err != nil {
				t.Fatal(err)
			}
			keys[r], _ = kp.PublicKey()
		}
		snippet, err := roles.ServerConfig(cfg, keys)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "nats.conf")
		if err := os.WriteFile(path, []byte(snippet), 0o600); err != nil {
			t.Fatal(err)
		}
		opts, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("nats-server rejects the snippet: %v\n%s", err, snippet)
		}
		if len(opts.Nkeys) != len(roles.All) {
			t.Fatalf("%d users in the snippet", len(opts.Nkeys))
		}
		for _, u := range opts.Nkeys {
			var role roles.Role
			for r, k := range keys {
				if k == u.Nkey {
					role = r
				}
			}
			want, err := roles.Permissions(role, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(u.Permissions, want) {
				t.Errorf("%s: the snippet grants\n%+v\nwant\n%+v", role, u.Permissions, want)
			}
			wantAccount := roles.OmniQAccount
			if role == roles.Submitter {
				wantAccount = roles.SubmittersAccount
			}
			if u.Account == nil || u.Account.Name != wantAccount {
				t.Errorf("%s: in account %v, want %s", role, u.Account, wantAccount)
			}
		}
	}
}

// A login Embed cannot place is refused, saying why.
func TestEmbedRefusesBadLogins(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		login roles.Login
		want  error
	}{
		{roles.Login{Role: roles.Submitter}, jetstream.ErrInvalidConfig},
		{roles.Login{Role: roles.Operator, NKey: "UA", User: "u", Password: "p"}, jetstream.ErrInvalidConfig},
		{roles.Login{Role: "admin", NKey: "UA"}, roles.ErrUnknownRole},
	} {
		var ec embedded.Config
		if err := roles.Embed(&ec, jetstream.Config{}, tt.login); !errors.Is(err, tt.want) {
			t.Errorf("Embed(%+v) = %v, want %v", tt.login, err, tt.want)
		}
	}
}

// The submitters' account holds at most three quarters of the embedded
// server's connections: a submitter holding all it can leaves room for
// runners, operators and the dashboard (atk21).
func TestEmbedLeavesRunnersAndOperatorsConnections(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		serverMax int
		want      int
	}{
		{1000, 750},
		{65536, 49152},
		{1, 1},
		{0, embedded.DefaultMaxConnections() * 3 / 4}, // the server's default
	} {
		ec := embedded.Config{MaxConnections: tt.serverMax}
		if err := roles.Embed(&ec, jetstream.Config{}, roles.Login{Role: roles.Submitter, NKey: "UA"}); err != nil {
			t.Fatal(err)
		}
		if len(ec.Accounts) != 1 || ec.Accounts[0].Name != roles.SubmittersAccount {
			t.Fatalf("accounts = %+v, want the submitters'", ec.Accounts)
		}
		if got := ec.Accounts[0].MaxConnections; got != tt.want {
			t.Errorf("server of %d connections: the submitters may hold %d, want %d", tt.serverMax, got, tt.want)
		}
	}
}
