package models

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// checkDecode asserts that DecodeTaskJSON gives what json.Unmarshal gives
// into a fresh Task, whatever *t held before, and reports whether the input
// took the fast path.
func checkDecode(t testing.TB, b []byte) (fast bool) {
	t.Helper()
	var want Task
	wantErr := json.Unmarshal(b, &want)
	got := Task{ID: "left over", Attempt: 9, Errors: []TaskError{{Message: "old"}}, Progress: &Progress{Message: "old"}}
	err := DecodeTaskJSON(b, &got)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("input %q: error %v, encoding/json's %v", b, err, wantErr)
	}
	if err != nil && err.Error() != wantErr.Error() {
		t.Fatalf("input %q: error %q, encoding/json's %q", b, err, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("input %q:\n got %#v\nwant %#v", b, got, want)
	}
	var scratch Task
	d := taskDecoder{b: b}
	return d.task(&scratch) && d.i == len(b)
}

// DecodeTaskJSON decodes what AppendJSON and encoding/json write as
// encoding/json does, on the fast path, and the same records cut, with a
// byte changed, left out or a space put in, as encoding/json does too.
func TestDecodeTaskJSONIsEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	fast := 0
	const n = 10000 // and as many cut or changed: 20,000 inputs
	for range n {
		task := encodable(randomTask(r))
		b, err := task.AppendJSON(nil)
		if err != nil {
			t.Fatalf("task %+v does not encode: %v", task, err)
		}
		if checkDecode(t, b) {
			fast++
		}
		mutated := append([]byte(nil), b...)
		switch at := r.IntN(len(b)); r.IntN(4) {
		case 0:
			checkDecode(t, b[:at])
		case 1:
			const bytes = "{}[]\":,0-.eE \\nutl\x00\x80x"
			mutated[at] = bytes[r.IntN(len(bytes))]
			checkDecode(t, mutated)
		case 2:
			checkDecode(t, append(mutated[:at], mutated[at+1:]...))
		default:
			checkDecode(t, append(append(mutated[:at:at], ' '), b[at:]...))
		}
	}
	// Every record AppendJSON writes takes the fast path.
	if fast < n {
		t.Fatalf("%d of %d records took the fast path", fast, n)
	}
}

// encodable replaces the times and the progress fraction of t that
// encoding/json refuses to write (a year past 9999, a zone 24 hours or more
// away, NaN) with ones it writes.
func encodable(t *Task) *Task {
	fix := func(tm *time.Time) {
		_, off := tm.Zone()
		if y := tm.Year(); y < 0 || y > 9999 || off <= -24*3600 || off >= 24*3600 {
			*tm = time.Unix(1_700_000_000, 1).UTC()
		}
	}
	for _, tm := range []*time.Time{&t.CreatedAt, &t.RunAt, &t.StartedAt, &t.FinishedAt, &t.UpdatedAt, &t.QuarantinedUntil} {
		fix(tm)
	}
	if p := t.Progress; p != nil {
		fix(&p.UpdatedAt)
		if p.Fraction != p.Fraction {
			p.Fraction = -1
		}
	}
	if t.Error != nil {
		fix(&t.Error.Timestamp)
	}
	for i := range t.Errors {
		fix(&t.Errors[i].Timestamp)
	}
	return t
}

// The records the runner writes on every task, and failed records whose
// tracebacks are full of escapes, take the fast path.
func TestDecodeTaskJSONFastPathForUsualRecords(t *testing.T) {
	for name, task := range usualTasks() {
		b, err := task.AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !checkDecode(t, b) {
			t.Errorf("%s: the record fell back to encoding/json: %s", name, b)
		}
		var back Task
		if err := DecodeTaskJSON(b, &back); err != nil || !reflect.DeepEqual(&back, task) {
			t.Errorf("%s: round trip gives %+v (%v), want %+v", name, back, err, task)
		}
	}
}

func usualTasks() map[string]*Task {
	now := time.Date(2026, 11, 26, 3, 4, 5, 123456789, time.UTC)
	pending := NewTask("01JD-task", "echo", 3, 30*time.Second, now)

	succeeded := NewTask("01JD-task", "echo", 3, 30*time.Second, now)
	succeeded.Status, succeeded.Attempt, succeeded.StartedAt, succeeded.FinishedAt = StatusSucceeded, 1, now, now
	succeeded.Progress = NewProgress(1, "echoed", now)
	succeeded.Result = []byte("hello")

	running := NewTask("01JD-task", "resize", 3, 0, now)
	running.Status, running.Attempt, running.StartedAt, running.Runner = StatusRunning, 2, now, "runner-a"
	running.ClaimSequence, running.ClaimDelivery, running.ClaimStream = 1<<40, 3, "OMNIQ_TASKS"
	running.Progress = NewProgress(0.375, "", now)

	failed := NewTask("01JD-task", "py", 2, time.Minute+1500*time.Millisecond, now)
	te := TaskError{ErrorType: "ValueError", Message: "bad \"input\" <x> & é 日本", Timestamp: now,
		Traceback: "Traceback (most recent call last):\n\tFile \"x.py\", line 1\n\u2028😀", RetryCount: 2}
	failed.Status, failed.Attempt, failed.RetryCount, failed.FinishedAt = StatusFailed, 3, 2, now
	failed.Error, failed.Errors, failed.ErrorsDropped = &te, []TaskError{te, te}, 4
	failed.Interruptions, failed.Replays, failed.QuarantineWaits, failed.PluginCrashes, failed.SharedCrashes = 1, 2, 3, 4, 5
	waiting := NewTask("01JD-task", "echo", 3, 0, now)
	waiting.Status, waiting.Attempt, waiting.QuarantineWaits = StatusRetrying, 1, 1
	waiting.RunAt, waiting.QuarantinedUntil = now.Add(time.Minute), now.Add(time.Minute)
	return map[string]*Task{"pending": pending, "succeeded": succeeded, "running": running, "failed": failed, "waiting for a quarantine": waiting}
}

// Input that is not in AppendJSON's shape keeps encoding/json's meaning
// exactly: each of these is compared with it.
func TestDecodeTaskJSONDeviations(t *testing.T) {
	const (
		progress  = `{"fraction":0.5,"message":"m","updated_at":"2026-01-01T00:00:00Z"}`
		taskError = `{"error_type":"x","message":"m","timestamp":"2026-01-01T00:00:00Z","traceback":"","retry_count":0,"is_retryable":true}`
		base      = `{"schema_version":1,"id":"a","function":"f","status":"retrying","attempt":1,"retry_count":0,` +
			`"max_retries":3,"timeout":"30s","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:01.5Z",` +
			`"progress":` + progress + `,"result":"aGk=","error":` + taskError + `,"errors":[` + taskError + `]}`
	)
	if !checkDecode(t, []byte(base)) {
		t.Fatalf("the base record did not take the fast path")
	}
	swap := func(old, new string) string {
		if !strings.Contains(base, old) {
			t.Fatalf("%q is not in the base record", old)
		}
		return strings.Replace(base, old, new, 1)
	}
	cases := map[string]string{
		"empty object":           `{}`,
		"empty":                  ``,
		"null":                   `null`,
		"array":                  `[]`,
		"string":                 `"x"`,
		"space before":           " " + base,
		"newline after":          base + "\n",
		"space after colon":      swap(`"id":"a"`, `"id": "a"`),
		"space after comma":      swap(`,"function"`, `, "function"`),
		"space in progress":      swap(`{"fraction"`, `{ "fraction"`),
		"unknown key first":      swap(`{"schema_version"`, `{"x":1,"schema_version"`),
		"unknown key":            swap(`"function":"f",`, `"function":"f","extra":{"a":[1,null]},`),
		"unknown key last":       swap(`}]}`, `}],"zzz":true}`),
		"unknown nested key":     swap(`"fraction":0.5`, `"fraction":0.5,"eta":"1s"`),
		"upper-case key":         swap(`"id":"a"`, `"ID":"b"`),
		"mixed-case key":         swap(`"schema_version":1`, `"Schema_Version":2`),
		"kelvin sign key":        swap(`"attempt":1`, `"attempt":1,"retry_count":5,"\u212aey":1`),
		"escaped key":            swap(`"id":"a"`, `"\u0069d":"b"`),
		"duplicate key":          swap(`"function":"f"`, `"function":"f","id":"b"`),
		"keys out of order":      swap(`"schema_version":1,"id":"a"`, `"id":"a","schema_version":1`),
		"duplicate progress":     swap(`"result"`, `"progress":{"message":"n"},"result"`),
		"duplicate error":        swap(`"errors"`, `"error":{"retry_count":7},"errors"`),
		"duplicate errors":       swap(`}]}`, `}],"errors":[{"message":"second"}]}`),
		"null string":            swap(`"id":"a"`, `"id":null`),
		"null int":               swap(`"attempt":1`, `"attempt":null`),
		"null time":              swap(`"created_at":"2026-01-01T00:00:00Z"`, `"created_at":null`),
		"null timeout":           swap(`"timeout":"30s"`, `"timeout":null`),
		"null progress":          swap(`"progress":`+progress, `"progress":null`),
		"null result":            swap(`"result":"aGk="`, `"result":null`),
		"null errors":            swap(`"errors":[`+taskError+`]`, `"errors":null`),
		"null in errors":         swap(`"errors":[`, `"errors":[null,`),
		"empty errors":           swap(`"errors":[`+taskError+`]`, `"errors":[]`),
		"two errors":             swap(`"errors":[`+taskError+`]`, `"errors":[`+taskError+`,{}]`),
		"null error":             swap(`"error":`+taskError, `"error":null`),
		"empty error":            swap(`"error":`+taskError, `"error":{}`),
		"empty progress":         swap(`"progress":`+progress, `"progress":{}`),
		"escape newline":         swap(`"id":"a"`, `"id":"a\nb\t\"\\\/\b\f\r"`),
		"escape unicode":         swap(`"id":"a"`, `"id":"\u00e9\u2028\u0000\uABCD"`),
		"surrogate pair":         swap(`"message":"m"`, `"message":"\ud83d\ude00"`),
		"lone high surrogate":    swap(`"message":"m"`, `"message":"\ud800x"`),
		"lone low surrogate":     swap(`"message":"m"`, `"message":"\udc00"`),
		"high then non-low":      swap(`"message":"m"`, `"message":"\ud800\u0041"`),
		"two high surrogates":    swap(`"message":"m"`, `"message":"\ud800\ud800\udc00"`),
		"short unicode escape":   swap(`"message":"m"`, `"message":"\u12"`),
		"bad unicode escape":     swap(`"message":"m"`, `"message":"\u12g4"`),
		"bad escape":             swap(`"message":"m"`, `"message":"\x41"`),
		"escape at end":          swap(`"message":"m"`, `"message":"\`),
		"invalid UTF-8":          swap(`"id":"a"`, "\"id\":\"a\xff\xc3(\xed\xa0\x80\xf0\x9f\x98\""),
		"valid UTF-8":            swap(`"id":"a"`, `"id":"héllo 日本 😀"`),
		"replacement char":       swap(`"id":"a"`, `"id":"`+"\uFFFD"+`"`),
		"DEL":                    swap(`"id":"a"`, "\"id\":\"\x7f\""),
		"control byte":           swap(`"id":"a"`, "\"id\":\"a\x01\""),
		"tab byte":               swap(`"id":"a"`, "\"id\":\"a\tb\""),
		"unit separator byte":    swap(`"id":"a"`, "\"id\":\"a\x1f\\n\""),
		"escaped status":         swap(`"status":"retrying"`, `"status":"r\u0065trying"`),
		"unknown status":         swap(`"status":"retrying"`, `"status":"later"`),
		"escaped time":           swap(`"created_at":"2026-01-01T00:00:00Z"`, `"created_at":"2026-01-01T00:00:00\u005a"`),
		"bad time":               swap(`"created_at":"2026-01-01T00:00:00Z"`, `"created_at":"2026-13-01T00:00:00Z"`),
		"time with offset":       swap(`"created_at":"2026-01-01T00:00:00Z"`, `"created_at":"2026-01-01T00:00:00.000000001+05:30"`),
		"time as number":         swap(`"created_at":"2026-01-01T00:00:00Z"`, `"created_at":0`),
		"timeout as number":      swap(`"timeout":"30s"`, `"timeout":1000000`),
		"timeout too large":      swap(`"timeout":"30s"`, `"timeout":"9999999999h"`),
		"timeout empty":          swap(`"timeout":"30s"`, `"timeout":""`),
		"timeout escaped":        swap(`"timeout":"30s"`, `"timeout":"30\u0073"`),
		"timeout micro":          swap(`"timeout":"30s"`, `"timeout":"1.5µs"`),
		"float for int":          swap(`"attempt":1`, `"attempt":1.0`),
		"exponent for int":       swap(`"attempt":1`, `"attempt":1e3`),
		"minus zero int":         swap(`"attempt":1`, `"attempt":-0`),
		"negative int":           swap(`"attempt":1`, `"attempt":-12`),
		"leading zero":           swap(`"attempt":1`, `"attempt":01`),
		"plus sign":              swap(`"attempt":1`, `"attempt":+1`),
		"int max":                swap(`"attempt":1`, `"attempt":9223372036854775807`),
		"int min":                swap(`"attempt":1`, `"attempt":-9223372036854775808`),
		"int over max":           swap(`"attempt":1`, `"attempt":9223372036854775808`),
		"huge int":               swap(`"attempt":1`, `"attempt":123456789012345678901234567890`),
		"string for int":         swap(`"attempt":1`, `"attempt":"1"`),
		"bool for int":           swap(`"attempt":1`, `"attempt":true`),
		"uint":                   swap(`"attempt":1`, `"attempt":1,"claim_sequence":18446744073709551615`),
		"uint over max":          swap(`"attempt":1`, `"attempt":1,"claim_sequence":18446744073709551616`),
		"negative uint":          swap(`"attempt":1`, `"attempt":1,"claim_sequence":-1`),
		"minus zero uint":        swap(`"attempt":1`, `"attempt":1,"claim_sequence":-0`),
		"fraction 1":             swap(`"fraction":0.5`, `"fraction":1`),
		"fraction -1":            swap(`"fraction":0.5`, `"fraction":-1`),
		"fraction 10":            swap(`"fraction":0.5`, `"fraction":10`),
		"fraction -0":            swap(`"fraction":0.5`, `"fraction":-0`),
		"fraction exponent":      swap(`"fraction":0.5`, `"fraction":5E-1`),
		"fraction exponent sign": swap(`"fraction":0.5`, `"fraction":5e+0`),
		"fraction huge":          swap(`"fraction":0.5`, `"fraction":1e400`),
		"fraction tiny":          swap(`"fraction":0.5`, `"fraction":1e-400`),
		"fraction dot":           swap(`"fraction":0.5`, `"fraction":1.`),
		"fraction leading dot":   swap(`"fraction":0.5`, `"fraction":.5`),
		"fraction 00":            swap(`"fraction":0.5`, `"fraction":00`),
		"fraction string":        swap(`"fraction":0.5`, `"fraction":"0.5"`),
		"result empty":           swap(`"result":"aGk="`, `"result":""`),
		"result bad base64":      swap(`"result":"aGk="`, `"result":"aGk"`),
		"result with newline":    swap(`"result":"aGk="`, `"result":"aG\nk="`),
		"result URL base64":      swap(`"result":"aGk="`, `"result":"-_8="`),
		"retryable as string":    swap(`"is_retryable":true`, `"is_retryable":"true"`),
		"retryable as number":    swap(`"is_retryable":true`, `"is_retryable":1`),
		"retryable false":        swap(`"is_retryable":true`, `"is_retryable":false`),
		"retryable truth":        swap(`"is_retryable":true`, `"is_retryable":truth`),
		"trailing garbage":       base + "x",
		"trailing brace":         base + "}",
		"second object":          base + "{}",
		"trailing comma":         swap(`}]}`, `}],}`),
		"missing comma":          swap(`,"function"`, `"function"`),
		"missing colon":          swap(`"id":"a"`, `"id""a"`),
		"unterminated key":       `{"id`,
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) { checkDecode(t, []byte(in)) })
	}
	for i := range base {
		checkDecode(t, []byte(base[:i]))
	}
}

func FuzzDecodeTaskJSON(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 20 {
		if b, err := randomTask(r).AppendJSON(nil); err == nil {
			f.Add(b)
		}
	}
	for _, task := range usualTasks() {
		b, _ := task.AppendJSON(nil)
		f.Add(b)
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkDecode(t, b) })
}

func BenchmarkDecodeTask(b *testing.B) {
	tasks := usualTasks()
	for _, name := range []string{"succeeded", "failed"} {
		rec, _ := tasks[name].AppendJSON(nil)
		b.Run(name+"/encoding-json", func(b *testing.B) {
			for b.Loop() {
				var t Task
				_ = json.Unmarshal(rec, &t)
			}
		})
		b.Run(name+"/DecodeTaskJSON", func(b *testing.B) {
			for b.Loop() {
				var t Task
				_ = DecodeTaskJSON(rec, &t)
			}
		})
	}
}
