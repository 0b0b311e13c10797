package loglimit_test

import (
	"testing"
	"time"

	"github.com/omniq/omniq/internal/loglimit"
)

func TestLineLimiter(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	type step struct {
		at                 time.Duration
		lines              int
		wantOK             int
		wantFirst          int
		wantDroppedOnFirst int // dropped reported by the first line allowed
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"within the burst", []step{{0, 200, 200, 0, 0}}},
		{"past the burst", []step{{0, 250, 200, 1, 0}}},
		{"refilled at the rate", []step{{0, 200, 200, 0, 0}, {time.Second, 60, 50, 1, 0}}},
		{"flood over once full again", []step{{0, 300, 200, 1, 0}, {4 * time.Second, 1, 1, 0, 100}}},
		{"not over while not full", []step{{0, 300, 200, 1, 0}, {time.Second, 1, 1, 0, 0}, {5 * time.Second, 1, 1, 0, 100}}},
		{"a second flood announced again", []step{{0, 201, 200, 1, 0}, {4 * time.Second, 201, 200, 1, 1}}},
	} {
		l := loglimit.New(200, 50)
		for i, s := range tc.steps {
			var ok, first, dropped int
			for j := range s.lines {
				o, f, d := l.Take(t0.Add(s.at))
				if o {
					ok++
					if ok == 1 {
						dropped = d
					} else if d != 0 {
						t.Errorf("%s, step %d, line %d: dropped %d reported again", tc.name, i, j, d)
					}
				}
				if f {
					first++
				}
			}
			if ok != s.wantOK || first != s.wantFirst || dropped != s.wantDroppedOnFirst {
				t.Errorf("%s, step %d: %d allowed, %d announced, %d reported dropped; want %d, %d, %d",
					tc.name, i, ok, first, dropped, s.wantOK, s.wantFirst, s.wantDroppedOnFirst)
			}
		}
	}
}
