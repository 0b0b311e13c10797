package pluginhost_test

import (
	"os"
	"testing"
	"time"

	"github.com/omniq/omniq/runner/pluginhost"
)

func TestZZProbe(t *testing.T) {
	script, _ := os.ReadFile("/tmp/iso11-probe.sh")
	s := startSupervisor(t, execPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{Env: execPlugin(t, map[string]string{"probe": string(script)})}})
	out := s.Execute(ctx(t), req("probe", "probe", ""), time.Now().Add(60*time.Second), nil)
	t.Logf("iso %+v", s.Process().Isolation())
	t.Logf("out:\n%s\nfailure %+v", out.Output, out.Failure)
}
