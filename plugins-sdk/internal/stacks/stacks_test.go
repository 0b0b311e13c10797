package stacks

import (
	"strings"
	"testing"
)

// A goroutine profile as runtime/pprof writes it with debug=1: stacks
// grouped, labels under the count, tabs repeated to align the columns.
const sampleProfile = "goroutine profile: total 4\n" +
	"1 @ 0x442931 0x47cd1d\n" +
	"#\t0x4c89f0\truntime/pprof.writeRuntimeProfile+0xb0\t/go/src/runtime/pprof/pprof.go:851\n" +
	"#\t0x4dc0d0\tmain.main+0x50\t\t\t\t/src/main.go:19\n" +
	"\n" +
	"1 @ 0x47d92e 0x480b25\n" +
	"# labels: {\"omniq_attempt\":\"7\"}\n" +
	"#\t0x480b24\ttime.Sleep+0x164\t\t\t\t\t/go/src/runtime/time.go:363\n" +
	"#\t0x4dc19a\tmain.hang+0x7a\t\t\t\t\t/src/my plugin/main.go:11\n" +
	"#\t0x4dc18b\tgithub.com/omniq/omniq/plugins-sdk.HandlerFunc.ServeTask+0x28\t/sdk/handler.go:45\n" +
	"#\t0x4dc18c\tgithub.com/omniq/omniq/plugins-sdk.Invoke+0x93\t\t/sdk/errors.go:131\n" +
	"\n" +
	"2 @ 0x47d92e 0x480b26\n" +
	"# labels: {\"omniq_attempt\":\"7\", \"other\":\"x\"}\n" +
	"#\t0x480b24\tmain.worker+0x64\t/src/my plugin/worker.go:3\n" +
	"#\t0x480b25\truntime.goexit+0x1\t/go/src/runtime/asm_amd64.s:1700\n" +
	"\n" +
	"1 @ 0x47d92e\n" +
	"# labels: {\"omniq_attempt\":\"77\"}\n" +
	"#\t0x480b24\tmain.other+0x64\t/src/main.go:30\n" +
	"\n" +
	"1 @ 0x47d92f\n" +
	"# labels: {\"omniq_attempt\":\"9\"}\n" +
	"#\t0x480b24\tgoogle.golang.org/protobuf/proto.Size+0x64\t/mod/proto/size.go:20\n" +
	"#\t0x480b25\tgithub.com/omniq/omniq/plugins-sdk.ReportProgress+0x64\t/sdk/progress.go:40\n" +
	"#\t0x480b26\tmain.sleep+0x64\t/src/main.go:123\n" +
	"#\t0x480b27\tgithub.com/omniq/omniq/plugins-sdk.HandlerFunc.ServeTask+0x28\t/sdk/handler.go:45\n" +
	"#\t0x480b28\tgithub.com/omniq/omniq/plugins-sdk.Invoke+0x93\t/sdk/errors.go:131\n" +
	"#\t0x480b29\tgoogle.golang.org/grpc.(*Server).handleStream+0x10\t/mod/grpc/server.go:1\n" +
	"#\t0x480b2a\truntime.goexit+0x1\t/go/src/runtime/asm_amd64.s:1700\n"

func TestStacksLabelled(t *testing.T) {
	for _, tc := range []struct {
		name, label string
		want        []string // in order
		absent      []string
	}{
		{
			name:  "the attempt's goroutines, cut at the SDK's frames",
			label: `"omniq_attempt":"7"`,
			want: []string{"goroutine of the handler at its deadline:\n", "time.Sleep(...)\n\t/go/src/runtime/time.go:363\n",
				"main.hang(...)\n\t/src/my plugin/main.go:11\n", "\n2 goroutines of the handler at its deadline:\n", "main.worker(...)\n\t/src/my plugin/worker.go:3\n"},
			absent: []string{"plugins-sdk", "main.main", "main.other", "pprof"},
		},
		{name: "another attempt's number is not a prefix match", label: `"omniq_attempt":"77"`, want: []string{"main.other(...)"}, absent: []string{"main.hang", "main.worker"}},
		// A handler in an SDK call at its deadline (sdk.ReportProgress)
		// was cut at that call: its traceback held protobuf's frames and
		// not the handler's (walk21, seen as a flaky plugins-sdk test).
		{
			name:   "a handler in an SDK call is kept below it",
			label:  `"omniq_attempt":"9"`,
			want:   []string{"proto.Size(...)", "plugins-sdk.ReportProgress(...)", "main.sleep(...)\n\t/src/main.go:123\n"},
			absent: []string{"ServeTask", "Invoke", "grpc", "goexit"},
		},
		{name: "no goroutine of the attempt", label: `"omniq_attempt":"8"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Labelled(sampleProfile, tc.label)
			if len(tc.want) == 0 && got != "" {
				t.Fatalf("got %q, want nothing", got)
			}
			at := 0
			for _, w := range tc.want {
				i := strings.Index(got[at:], w)
				if i < 0 {
					t.Fatalf("%q not found (in order) in:\n%s", w, got)
				}
				at += i + len(w)
			}
			for _, a := range tc.absent {
				if strings.Contains(got, a) {
					t.Errorf("%q should not be in:\n%s", a, got)
				}
			}
		})
	}
}
