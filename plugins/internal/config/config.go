// Package config reads the JSON config files of the bundled plugins that
// need one (exec, http) and turns their per-function settings into SDK
// registrations.
package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	sdk "github.com/omniq/omniq/plugins-sdk"
)

// Load reads the JSON file at path into v, refusing fields v does not have.
// env names the variable the path came from, for the error when it is empty.
func Load(env, path, readme string, v any) error {
	if path == "" {
		return fmt.Errorf("set %s to the path of its JSON config file (see %s)", env, readme)
	}
	if !filepath.IsAbs(path) {
		// A plugin starts in its own, empty temporary directory.
		return fmt.Errorf("%s=%s: give the config file's absolute path (a plugin's working directory is its private temporary directory, see docs/plugin-isolation.md)", env, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Function holds the settings every configured function has; plugins embed
// it in their own per-function struct.
type Function struct {
	// Timeout is the function's default per-attempt timeout ("30s").
	Timeout string `json:"timeout"`
	// MaxRetries is the function's default retry budget.
	MaxRetries *int `json:"max_retries"`
	// Concurrency is how many tasks of the function may run at once.
	Concurrency int `json:"concurrency"`
	// Description says what the function does, for operators.
	Description string `json:"description"`
}

// Options returns the SDK options for f; describe is the description used
// when f has none.
func (f Function) Options(describe string) ([]sdk.FunctionOption, error) {
	desc := f.Description
	if desc == "" {
		desc = describe
	}
	opts := []sdk.FunctionOption{sdk.Description(desc)}
	if f.Timeout != "" {
		d, err := time.ParseDuration(f.Timeout)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("timeout %q is not a positive duration", f.Timeout)
		}
		opts = append(opts, sdk.Timeout(d))
	}
	if f.MaxRetries != nil {
		if *f.MaxRetries < 0 {
			return nil, fmt.Errorf("max_retries must be >= 0, got %d", *f.MaxRetries)
		}
		opts = append(opts, sdk.MaxRetries(*f.MaxRetries))
	}
	if f.Concurrency < 0 {
		return nil, fmt.Errorf("concurrency must be >= 0, got %d", f.Concurrency)
	}
	if f.Concurrency > 0 {
		opts = append(opts, sdk.Concurrency(f.Concurrency))
	}
	return opts, nil
}

// Handle registers h for name on mux, returning the mux's objection (a bad
// name, a duplicate) as an error instead of a panic.
func Handle(mux *sdk.Mux, name string, h sdk.Handler, opts []sdk.FunctionOption) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	mux.Handle(name, h, opts...)
	return nil
}
