package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
	"github.com/omniq/omniq/runner/pluginhost/internal/sandbox"
)

// ErrFunctionNotAllowed is returned (joined) by Host refreshes for a
// function a plugin declares outside its Config.AllowFunctions.
var ErrFunctionNotAllowed = errors.New("function not allowed for the plugin")

// ErrDuplicateFunction is returned by StartHost when two plugins declare the
// same function.
var ErrDuplicateFunction = errors.New("function served by two plugins")

// HostConfig says which plugins to run.
type HostConfig struct {
	// Dir holds the plugin executables: every regular executable file in it
	// is started; symbolic links are not (a warning names each). Required
	// unless Paths is set.
	Dir string
	// Paths lists plugin executables explicitly, instead of Dir.
	Paths []string
	// Defaults is the supervision config every plugin starts from;
	// Defaults.Process.Path is ignored.
	Defaults Config
	// PerPlugin overrides Defaults for a plugin, by file name.
	PerPlugin map[string]Config
	// Logger receives lifecycle logs. Defaults to discarding them.
	Logger logrus.FieldLogger
}

// Function is a function served by a running plugin.
type Function struct {
	// Spec is what the plugin declared.
	Spec *pluginpb.FunctionSpec
	// Plugin is the plugin's file name.
	Plugin string
	// State is the plugin's state when Functions was called.
	State State
	// QuarantinedUntil is when the plugin's quarantine ends, zero when it
	// is not quarantined.
	QuarantinedUntil time.Time
	// Crashes is the plugin's crash count and latest crash.
	Crashes CrashReport
}

// PluginStatus is where one plugin is.
type PluginStatus struct {
	// Plugin is the plugin's file name.
	Plugin string
	// State is the supervisor's state.
	State State
	// QuarantinedUntil is when the quarantine ends, zero when the plugin
	// is not quarantined.
	QuarantinedUntil time.Time
	// Err is what brought the plugin down, nil when it is up.
	Err error
}

// Statuses returns the state of every plugin, in the host's order.
func (h *Host) Statuses() []PluginStatus {
	out := make([]PluginStatus, 0, len(h.sups))
	for _, s := range h.sups {
		st, err := s.State()
		out = append(out, PluginStatus{Plugin: s.Name(), State: st, QuarantinedUntil: s.QuarantinedUntil(), Err: err})
	}
	return out
}

// Host runs every plugin of a directory and routes tasks to them by
// function name.
type Host struct {
	log  logrus.FieldLogger
	sups []*Supervisor

	mu     sync.RWMutex
	routes map[string]*Supervisor
	// changes is signalled when a plugin's state changes (see Changes).
	changes chan struct{}
}

// Changes returns a channel that receives a value soon after any plugin's
// state changes (started, crashed, failed to start, quarantined,
// stopped) or its crash count grows, so that what is published about the
// plugins (a runner's function registrations) can follow without
// polling. It holds at most one value: changes that come while nobody
// reads coalesce into one, so a reader is never behind by more than one
// signal and never learns how many changes there were; it reads the
// state itself (Functions, Statuses). The channel is never closed.
func (h *Host) Changes() <-chan struct{} { return h.changes }

// StartHost starts every plugin and learns their functions. A plugin that
// fails to start is logged and retried in the background (its functions
// become known when it starts); two plugins declaring one function is an
// error, and every started plugin is stopped again.
func StartHost(ctx context.Context, cfg HostConfig) (*Host, error) {
	log := cfg.Logger
	if log == nil {
		log = Config{}.withDefaults().Process.Logger
	}
	// What this host cannot confine plugins with, said once (see
	// docs/plugin-isolation.md).
	for _, what := range sandbox.Limitations() {
		log.Warn("plugin isolation not enforced: " + what)
	}
	paths := cfg.Paths
	if paths == nil {
		var err error
		var links, plain []string
		if paths, links, plain, err = executables(cfg.Dir); err != nil {
			return nil, err
		}
		for _, l := range links {
			log.WithField("path", l).Warn("plugins directory: not starting " + l + ", a symbolic link: only the directory's regular files are plugins (copy the binary in)")
		}
		// Files beside the plugins (a module, a README) are allowed; a
		// plugin whose executable bit was lost says so here, not at all.
		for _, p := range plain {
			log.WithField("path", p).Info("plugins directory: not starting " + p + ", not executable (chmod +x it if it is a plugin)")
		}
	}
	warnReplaceable(log, paths)
	h := &Host{log: log, routes: make(map[string]*Supervisor), changes: make(chan struct{}, 1)}
	for _, path := range paths {
		c := cfg.Defaults
		if pc, ok := cfg.PerPlugin[filepath.Base(path)]; ok {
			c = pc
		}
		c.Process.Path = path
		if c.Process.Logger == nil {
			c.Process.Logger = log
		}
		s := NewSupervisor(c)
		s.changed = h.changes
		h.sups = append(h.sups, s)
		if err := s.Start(ctx); err != nil {
			log.WithError(err).WithField("plugin", s.Name()).Error("plugin failed to start; retrying in the background")
		}
	}
	if err := h.refresh(); err != nil && !onlyNotAllowed(err) {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.Stop(stopCtx)
		return nil, err
	} else if err != nil {
		// The plugin serves the functions it may; the others are named.
		h.warnRefresh(err)
	}
	return h, nil
}

// warnRefresh logs what refresh found wrong with the plugins' declarations.
func (h *Host) warnRefresh(err error) {
	if onlyNotAllowed(err) {
		h.log.WithError(err).Warn("a plugin declares functions it may not serve (plugins.<name>.functions); they get none of its tasks")
		return
	}
	h.log.WithError(err).Warn("plugin function declarations conflict; each function stays with the plugin that declared it first")
}

// onlyNotAllowed reports whether err, from refresh, joins only
// ErrFunctionNotAllowed errors.
func onlyNotAllowed(err error) bool {
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return errors.Is(err, ErrFunctionNotAllowed)
	}
	for _, e := range joined.Unwrap() {
		if !errors.Is(e, ErrFunctionNotAllowed) {
			return false
		}
	}
	return true
}

// warnReplaceable warns, when the runner is root, about each plugin binary
// and directory of binaries that someone other than root may write: a
// plugin running as that user (or as any user, where it is writable by
// every user) could replace a binary, or add one, for the next start.
func warnReplaceable(log logrus.FieldLogger, paths []string) {
	if os.Geteuid() != 0 {
		return // plugins run as the runner's user, who owns them anyway
	}
	seen := map[string]bool{}
	for _, path := range paths {
		for _, p := range []string{filepath.Dir(path), path} {
			if seen[p] {
				continue
			}
			seen[p] = true
			info, err := os.Stat(p)
			if err != nil {
				continue
			}
			st, ok := info.Sys().(*syscall.Stat_t)
			mode := info.Mode().Perm()
			if !ok || (st.Uid == 0 && mode&0o002 == 0 && (mode&0o020 == 0 || st.Gid == 0)) {
				continue
			}
			log.WithField("path", p).Warnf("plugin binary or directory %s may be written by others than root (owner uid %d, group gid %d, mode %#o): a plugin running as such a user could replace a plugin binary, or add one, for the next start; make it root's and writable by root alone, or give each plugin a sha256", p, st.Uid, st.Gid, mode)
		}
	}
}

// executables lists the regular, executable files of dir, sorted, the
// symbolic links in it and its regular files without an executable bit,
// neither of which are started.
func executables(dir string) (out, links, plain []string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("plugins directory: %w", err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			continue
		}
		path := filepath.Join(dir, e.Name())
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			links = append(links, path)
		case !info.Mode().IsRegular():
		case info.Mode().Perm()&0o111 == 0:
			plain = append(plain, path)
		default:
			out = append(out, path)
		}
	}
	sort.Strings(out)
	sort.Strings(links)
	sort.Strings(plain)
	return out, links, plain, nil
}

// refresh rebuilds the function routes from the supervisors' declarations.
// A function stays with the plugin that declared it first for as long as
// that plugin declares it: a plugin that declares another plugin's
// function after a restart (or a late start) does not get its tasks.
func (h *Host) refresh() error {
	routes := make(map[string]*Supervisor)
	h.mu.RLock()
	for name, s := range h.routes {
		if slices.ContainsFunc(s.Functions(), func(f *pluginpb.FunctionSpec) bool { return f.Name == name }) {
			routes[name] = s
		}
	}
	h.mu.RUnlock()
	var errs []error
	for _, s := range h.sups {
		for _, f := range s.Functions() {
			if other, dup := routes[f.Name]; dup && other != s {
				errs = append(errs, fmt.Errorf("%w: %q is declared by %s and %s", ErrDuplicateFunction, f.Name, other.Name(), s.Name()))
				continue
			}
			if err := models.ValidateFunctionName(f.Name); err != nil {
				errs = append(errs, fmt.Errorf("plugin %s: %w", s.Name(), err))
				continue
			}
			if allow := s.cfg.AllowFunctions; len(allow) > 0 && !slices.Contains(allow, f.Name) {
				errs = append(errs, fmt.Errorf("%w: plugin %s declares %q, which is not among its functions (%s)", ErrFunctionNotAllowed, s.Name(), f.Name, strings.Join(allow, ", ")))
				continue
			}
			routes[f.Name] = s
		}
	}
	h.mu.Lock()
	h.routes = routes
	h.mu.Unlock()
	return errors.Join(errs...)
}

// Functions returns the functions served now, by name. Plugins that start
// late add theirs; call it again to see them.
func (h *Host) Functions() map[string]Function {
	if err := h.refresh(); err != nil {
		h.warnRefresh(err)
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make(map[string]Function, len(h.routes))
	for name, s := range h.routes {
		for _, f := range s.Functions() {
			if f.Name == name {
				st, _ := s.State()
				out[name] = Function{Spec: f, Plugin: s.Name(), State: st, QuarantinedUntil: s.QuarantinedUntil(), Crashes: s.Crashes()}
			}
		}
	}
	return out
}

// Supervisors returns the host's plugin supervisors.
func (h *Host) Supervisors() []*Supervisor { return slices.Clone(h.sups) }

// Execute runs one attempt of a task of function fn; see
// Supervisor.Execute. A function no plugin serves fails unknown_function,
// not retryable.
func (h *Host) Execute(ctx context.Context, fn string, req *pluginpb.ExecuteRequest, deadline time.Time, onProgress func(*pluginpb.Progress)) Outcome {
	h.mu.RLock()
	s, ok := h.routes[fn]
	h.mu.RUnlock()
	if !ok {
		return Outcome{Failure: &Failure{ErrorType: models.ErrorTypeUnknownFunction, Message: fmt.Sprintf("no plugin serves function %q", fn)}}
	}
	req.Function = fn
	return s.Execute(ctx, req, deadline, onProgress)
}

// Stop stops every plugin; see Supervisor.Stop.
func (h *Host) Stop(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(h.sups))
	for i, s := range h.sups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Stop(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
