package credentials_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
	"go.uber.org/goleak"

	"github.com/omniq/omniq/internal/credentials"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestEnsureCreatesPrivateSeedsAndReusesThem(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "omniq-data")
	first, err := credentials.Ensure(data, "runner", "operator", "submitter")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(credentials.Dir(data)); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("credentials dir: %v, %v", st.Mode(), err)
	}
	seen := map[string]bool{}
	for _, k := range first {
		if k.File != credentials.SeedFile(data, k.Role) || !nkeys.IsValidPublicUserKey(k.Public) || seen[k.Public] {
			t.Fatalf("key %+v", k)
		}
		seen[k.Public] = true
		st, err := os.Stat(k.File)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, %v", k.File, st.Mode(), err)
		}
		kp, err := credentials.Load(k.File)
		if err != nil {
			t.Fatal(err)
		}
		if pub, _ := kp.PublicKey(); pub != k.Public {
			t.Fatalf("%s holds %s, want %s", k.File, pub, k.Public)
		}
	}
	// A restart reuses them.
	again, err := credentials.Ensure(data, "runner", "operator", "submitter")
	if err != nil {
		t.Fatal(err)
	}
	for i := range first {
		if again[i] != first[i] {
			t.Fatalf("restart: %+v, was %+v", again[i], first[i])
		}
	}
}

func TestEnsureRefusesCredentialsOthersCanRead(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	keys, err := credentials.Ensure(data, "operator")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(keys[0].File, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := credentials.Ensure(data, "operator"); !errors.Is(err, credentials.ErrInsecure) {
		t.Fatalf("world-readable seed: %v, want ErrInsecure", err)
	}
	if err := os.Chmod(keys[0].File, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(credentials.Dir(data), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := credentials.Ensure(data, "operator"); !errors.Is(err, credentials.ErrInsecure) {
		t.Fatalf("world-readable directory: %v, want ErrInsecure", err)
	}
}

// Any permission for the group or for others, on a seed or on its
// directory, is refused, not only the world's: a seed a group can read is
// a login every member of the group has. Found by mutation testing
// (mut24): checking only the others' bits (0o007) broke no test, which
// tried 0o644 and 0o755 alone.
func TestEnsureRefusesAnyModeBeyondTheOwner(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name        string
		file, dir   os.FileMode
		wantRefused bool
	}{
		{"owner only", 0o600, 0o700, false},
		{"owner read only", 0o400, 0o500, false},
		{"seed group-readable", 0o640, 0o700, true},
		{"seed group-writable", 0o620, 0o700, true},
		{"seed others-readable", 0o604, 0o700, true},
		{"directory group-listable", 0o600, 0o750, true},
		{"directory group-enterable", 0o600, 0o710, true},
		{"directory others-enterable", 0o600, 0o701, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			data := t.TempDir()
			keys, err := credentials.Ensure(data, "operator")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(keys[0].File, c.file); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(credentials.Dir(data), c.dir); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Chmod(credentials.Dir(data), 0o700) }) // for TempDir's removal
			_, err = credentials.Ensure(data, "operator")
			if c.wantRefused && !errors.Is(err, credentials.ErrInsecure) {
				t.Fatalf("seed %04o in a directory %04o: %v, want ErrInsecure", c.file, c.dir, err)
			}
			if !c.wantRefused && err != nil {
				t.Fatalf("seed %04o in a directory %04o: %v, want it accepted", c.file, c.dir, err)
			}
		})
	}
}

func TestEnsureRefusesCredentialsAnotherUserOwns(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the credentials to another user")
	}
	// Whoever may write the data directory (a plugin, as nobody, when it
	// is writable by every user) can put its own credentials directory
	// there, with seeds it knows, private to itself: a runner that took
	// them would let it log in as the operator.
	for _, own := range []string{"directory", "seed"} {
		data := t.TempDir()
		keys, err := credentials.Ensure(data, "operator")
		if err != nil {
			t.Fatal(err)
		}
		path := credentials.Dir(data)
		if own == "seed" {
			path = keys[0].File
		}
		if err := os.Chown(path, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if _, err := credentials.Ensure(data, "operator"); !errors.Is(err, credentials.ErrInsecure) || !strings.Contains(err.Error(), "65534") {
			t.Errorf("%s owned by nobody: %v, want ErrInsecure naming the owner", own, err)
		}
	}
}

func TestLoadRefusesWhatIsNotAUserSeed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	account, _ := nkeys.CreateAccount()
	accountSeed, _ := account.Seed()
	for name, body := range map[string][]byte{"garbage": []byte("hello"), "account": accountSeed} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, body, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := credentials.Load(p); !errors.Is(err, credentials.ErrBadSeed) {
			t.Errorf("%s: %v, want ErrBadSeed", name, err)
		}
	}
	if _, err := credentials.Load(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}

func TestFindOperator(t *testing.T) {
	data := t.TempDir()
	if _, err := credentials.Ensure(data, "operator"); err != nil {
		t.Fatal(err)
	}
	path, err := credentials.FindOperator(data)
	if err != nil || path != credentials.SeedFile(data, "operator") {
		t.Fatalf("FindOperator(data) = %q, %v", path, err)
	}
	empty := t.TempDir()
	if _, err := credentials.FindOperator(empty); err == nil || !strings.Contains(err.Error(), credentials.SeedFile(empty, "operator")) {
		t.Fatalf("a named directory without credentials: err = %v, want one naming the file", err)
	}
	// No directory named and none at the default place: no credentials,
	// no error (not on the runner's machine).
	t.Chdir(empty)
	if path, err := credentials.FindOperator(""); path != "" || err != nil {
		t.Fatalf("FindOperator(\"\") away from the runner = %q, %v", path, err)
	}
	t.Chdir(data)
	if err := os.MkdirAll("omniq-data", 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := credentials.Ensure("omniq-data", "operator"); err != nil {
		t.Fatal(err)
	}
	if path, err := credentials.FindOperator(""); err != nil || path != credentials.SeedFile(credentials.DefaultDataDir, "operator") {
		t.Fatalf("FindOperator(\"\") in the runner's directory = %q, %v", path, err)
	}
}
