package config

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	sdk "github.com/omniq/omniq/plugins-sdk"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func intp(n int) *int { return &n }

// TestOptionsDeclareTheFunctionsSettings: each setting of a configured
// function reaches what the plugin declares to the runner, and a bad one
// is refused with an error naming it.
func TestOptionsDeclareTheFunctionsSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		f       Function
		want    sdk.FunctionSpec
		wantErr string
	}{
		{"nothing set: the default description", Function{}, sdk.FunctionSpec{Name: "f", Description: "default"}, ""},
		{"every setting", Function{Timeout: "30s", MaxRetries: intp(2), Concurrency: 4, Description: "sends mail"},
			sdk.FunctionSpec{Name: "f", Timeout: 30 * time.Second, MaxRetries: 2, HasMaxRetries: true, Concurrency: 4, Description: "sends mail"}, ""},
		{"no retries is a setting", Function{MaxRetries: intp(0)}, sdk.FunctionSpec{Name: "f", HasMaxRetries: true, Description: "default"}, ""},
		{"timeout not a duration", Function{Timeout: "soon"}, sdk.FunctionSpec{}, `timeout "soon" is not a positive duration`},
		{"timeout not positive", Function{Timeout: "0s"}, sdk.FunctionSpec{}, `timeout "0s" is not a positive duration`},
		{"negative max_retries", Function{MaxRetries: intp(-1)}, sdk.FunctionSpec{}, "max_retries must be >= 0, got -1"},
		{"negative concurrency", Function{Concurrency: -2}, sdk.FunctionSpec{}, "concurrency must be >= 0, got -2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, err := tt.f.Options("default")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Options = %v, want an error saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			mux := sdk.NewMux()
			if err := Handle(mux, "f", sdk.HandlerFunc(func(context.Context, *sdk.Task) ([]byte, error) { return nil, nil }), opts); err != nil {
				t.Fatal(err)
			}
			if got := mux.Functions(); len(got) != 1 || got[0] != tt.want {
				t.Fatalf("declared %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestHandleReturnsTheMuxsObjection: a name the mux refuses is an error,
// not a panic that would take the plugin down with a stack.
func TestHandleReturnsTheMuxsObjection(t *testing.T) {
	t.Parallel()
	mux := sdk.NewMux()
	h := sdk.HandlerFunc(func(context.Context, *sdk.Task) ([]byte, error) { return nil, nil })
	if err := Handle(mux, "bad.name", h, nil); err == nil || !strings.Contains(err.Error(), "bad.name") {
		t.Fatalf("invalid name: %v", err)
	}
	if err := Handle(mux, "twice", h, nil); err != nil {
		t.Fatal(err)
	}
	if err := Handle(mux, "twice", h, nil); err == nil || !strings.Contains(err.Error(), "registered twice") {
		t.Fatalf("second registration: %v", err)
	}
}

// TestLoadRefusesWhatItCannotUse: Load names the variable to set, the file
// that cannot be read, and the field it does not know.
func TestLoadRefusesWhatItCannotUse(t *testing.T) {
	t.Parallel()
	type file struct {
		Functions map[string]Function `json:"functions"`
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var v file
	if err := Load("OMNIQ_EXEC_CONFIG", "", "plugins/exec/README.md", &v); err == nil ||
		!strings.Contains(err.Error(), "set OMNIQ_EXEC_CONFIG") || !strings.Contains(err.Error(), "plugins/exec/README.md") {
		t.Errorf("no path: %v", err)
	}
	missing := filepath.Join(dir, "missing.json")
	if err := Load("E", missing, "R", &v); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v", err)
	}
	typo := write("typo.json", `{"functoins": {}}`)
	if err := Load("E", typo, "R", &v); err == nil || !strings.Contains(err.Error(), typo) || !strings.Contains(err.Error(), `unknown field "functoins"`) {
		t.Errorf("unknown field: %v", err)
	}
	good := write("good.json", `{"functions": {"f": {"timeout": "5s", "max_retries": 1}}}`)
	if err := Load("E", good, "R", &v); err != nil {
		t.Fatal(err)
	}
	if f := v.Functions["f"]; f.Timeout != "5s" || f.MaxRetries == nil || *f.MaxRetries != 1 {
		t.Fatalf("loaded %+v", v)
	}
}
