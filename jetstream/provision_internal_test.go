package jetstream

import (
	"io"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"
)

func TestKeptMaxAge(t *testing.T) {
	log := logrus.New()
	log.Out = io.Discard
	const day = 24 * time.Hour
	for _, tc := range []struct {
		name      string
		have, ask time.Duration
		want      time.Duration
	}{
		{"same", day, day, day},
		{"longer asked: applied", day, 2 * day, 2 * day},
		{"shorter asked: kept", 2 * day, day, 2 * day},
		{"no limit asked: applied", day, 0, 0},
		{"a limit asked where there was none: kept", 0, day, 0},
		{"none and none", 0, 0, 0},
	} {
		if got := keptMaxAge(natsjs.StreamConfig{Name: "S", MaxAge: tc.have}, tc.ask, log); got != tc.want {
			t.Errorf("%s: keptMaxAge(have %s, asked %s) = %s, want %s", tc.name, tc.have, tc.ask, got, tc.want)
		}
	}
}
