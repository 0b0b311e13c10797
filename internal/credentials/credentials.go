// Package credentials keeps the nkey seeds the runner creates for OmniQ's
// roles on first start, in <data-dir>/credentials/<role>.nk: one seed per
// file, mode 0600, in a 0700 directory, reused on every later start. The
// files are plain nkey seeds, usable as they are with `nats --nkey FILE`
// and omniq-submit --nats-nkey.
//
// It links nkeys only (not nats-server), so omniq-submit can use it to find
// the operator's seed.
package credentials

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"
)

// ErrInsecure is returned when a credentials file or directory is open to
// other users, or is not a regular file or directory.
var ErrInsecure = errors.New("credentials are not private")

// ErrBadSeed is returned when a credentials file does not hold a user nkey
// seed.
var ErrBadSeed = errors.New("not an nkey user seed")

// Dir is the credentials directory of a runner data directory.
func Dir(dataDir string) string { return filepath.Join(dataDir, "credentials") }

// SeedFile is the path of role's seed in a runner data directory.
func SeedFile(dataDir, role string) string { return filepath.Join(Dir(dataDir), role+".nk") }

// Key is one role's credentials.
type Key struct {
	// Role is the role's name.
	Role string
	// File is the seed file's path.
	File string
	// Public is the user's public nkey (starts with U), what the server is
	// configured with.
	Public string
}

// Ensure returns the credentials of each role in dataDir, creating the
// directory (0700) and any missing seed (0600) first. Existing seeds are
// reused. A directory or file that other users can read, that another
// user owns (who may know its keys), or that is not what it should be,
// returns ErrInsecure naming it; a file that is not a user seed returns
// ErrBadSeed.
func Ensure(dataDir string, roles ...string) ([]Key, error) {
	dir := Dir(dataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("credentials: create %s: %w", dir, err)
	}
	if err := private(dir, true); err != nil {
		return nil, err
	}
	if err := ownedByUs(dir); err != nil {
		return nil, err
	}
	keys := make([]Key, 0, len(roles))
	for _, role := range roles {
		path := SeedFile(dataDir, role)
		if err := ownedByUs(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		kp, err := Load(path)
		if errors.Is(err, fs.ErrNotExist) {
			kp, err = create(path)
		}
		if err != nil {
			return nil, err
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("credentials: %s: %w", path, err)
		}
		keys = append(keys, Key{Role: role, File: path, Public: pub})
	}
	return keys, nil
}

// Load reads the user seed in path, checking that only its owner can read
// it. A missing file returns an error wrapping fs.ErrNotExist.
func Load(path string) (nkeys.KeyPair, error) {
	if err := private(path, false); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadSeed, path, err)
	}
	if pub, err := kp.PublicKey(); err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return nil, fmt.Errorf("%w: %s holds a seed of another kind", ErrBadSeed, path)
	}
	return kp, nil
}

// create writes a new user seed to path, failing if the file appeared
// meanwhile (another process on the same data directory).
func create(path string) (nkeys.KeyPair, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("credentials: create a key: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("credentials: create %s: %w", path, err)
	}
	_, werr := f.Write(append(seed, '\n'))
	serr := f.Sync()
	if cerr := f.Close(); werr == nil && serr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = serr
	}
	if werr != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("credentials: write %s: %w", path, werr)
	}
	return kp, nil
}

// private checks that path is a directory (dir) or regular file that no
// other user can read or write.
func private(path string, dir bool) error {
	st, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	switch {
	case dir && !st.IsDir():
		return fmt.Errorf("%w: %s is not a directory", ErrInsecure, path)
	case !dir && !st.Mode().IsRegular():
		return fmt.Errorf("%w: %s is not a regular file", ErrInsecure, path)
	case st.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("%w: %s has mode %04o; other users could read it (chmod go-rwx %s)", ErrInsecure, path, st.Mode().Perm(), path)
	}
	return nil
}

// DefaultDataDir is omniq-runner's default --data-dir, where `make run`
// keeps its data and credentials.
const DefaultDataDir = "./omniq-data"

// OperatorInboxPrefix is the inbox prefix operators' connections use
// (roles.OperatorInboxPrefix, repeated here so that tools which only
// connect do not link nats-server).
const OperatorInboxPrefix = "_INBOX_OMNIQ_OPERATOR"

// FindOperator returns the operator's seed file that omniq-runner created
// in dataDir, or in DefaultDataDir when dataDir is "", so that tools on the
// runner's machine (omniq-submit, omniq-ui) need no flags. It returns ""
// and no error when dataDir is "" and the default directory holds no
// credentials (not on the runner's machine), and an error naming the file
// when dataDir was given and holds none, or the file is unusable.
func FindOperator(dataDir string) (string, error) {
	dir := dataDir
	if dir == "" {
		dir = DefaultDataDir
	}
	path := SeedFile(dir, "operator")
	if _, err := Load(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) && dataDir == "" {
			return "", nil
		}
		return "", fmt.Errorf("operator credentials: %w", err)
	}
	return path, nil
}
