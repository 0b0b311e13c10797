package benchcmd

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// RoundsReport is what omniq-bench --rounds N reports for N above 1: every
// round's full report, each a run of its own (its own nats-server and
// runner, the peers right after each of OmniQ's sections), and each
// side-by-side row's ratios over the rounds. One run's ratios swing by a
// third with the machine's phase; the median of several says more.
type RoundsReport struct {
	// Summary has a row per side-by-side row of the rounds (none without
	// --peers).
	Summary []RowSummary `json:"summary,omitempty"`
	// Rounds are the rounds' reports, in the order they ran.
	Rounds []*Report `json:"rounds"`
}

// RowSummary is one side-by-side row over the rounds: OmniQ's figure, and
// its ratio to each peer, round by round.
type RowSummary struct {
	Work string `json:"work"`
	Unit string `json:"unit"`
	// HigherIsBetter says whether the figure is a rate (or else a time or
	// a cost), as in Comparison.
	HigherIsBetter bool `json:"higher_is_better"`
	// OmniQ is OmniQ's figure in each round that has the row.
	OmniQ []float64 `json:"omniq"`
	// Ratios maps a peer to OmniQ's figure over the peer's, one per round
	// that measured both.
	Ratios map[string][]float64 `json:"ratios"`
	// Median maps a peer to the median of its Ratios.
	Median map[string]float64 `json:"median"`
}

// summarize gathers the rounds' side-by-side rows by their work, in the
// order they first appear. Each ratio is taken within its round, where
// OmniQ and the peer ran minutes apart, never across rounds.
func summarize(rounds []*Report) []RowSummary {
	var rows []RowSummary
	for _, r := range rounds {
		for _, c := range r.Comparison {
			i := slices.IndexFunc(rows, func(s RowSummary) bool { return s.Work == c.Work })
			if i < 0 {
				rows = append(rows, RowSummary{Work: c.Work, Unit: c.Unit, HigherIsBetter: c.HigherIsBetter,
					Ratios: map[string][]float64{}, Median: map[string]float64{}})
				i = len(rows) - 1
			}
			s := &rows[i]
			s.OmniQ = append(s.OmniQ, c.OmniQ)
			for _, p := range peerSystems {
				if v, ok := c.Peers[p]; ok && v > 0 {
					s.Ratios[p] = append(s.Ratios[p], c.OmniQ/v)
				}
			}
		}
	}
	for i := range rows {
		for p, rs := range rows[i].Ratios {
			rows[i].Median[p] = median(rs)
		}
	}
	return rows
}

// median is the middle of vs, or the mean of the middle two; 0 for none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// WriteRounds writes rr as Markdown: the summary, then each round's tables.
func WriteRounds(w io.Writer, rr *RoundsReport) {
	fmt.Fprintf(w, "# omniq-bench: %d rounds\n\n", len(rr.Rounds))
	if len(rr.Summary) > 0 {
		var peers []string
		for _, p := range peerSystems {
			if slices.ContainsFunc(rr.Summary, func(s RowSummary) bool { return len(s.Ratios[p]) > 0 }) {
				peers = append(peers, p)
			}
		}
		names := map[string]string{"river": "River", "asynq": "asynq"}
		fmt.Fprintf(w, "Each round is a full run (below, in order). A ratio is OmniQ's figure over the peer's in the same round: above 1 OmniQ is faster for a rate, slower or costlier for a time or CPU.\n\n")
		head := []string{"work", "OmniQ, round by round"}
		for _, p := range peers {
			head = append(head, "OmniQ / "+names[p]+" (median)")
		}
		fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat("---|", len(head)))
		for _, s := range rr.Summary {
			figs := make([]string, len(s.OmniQ))
			for i, v := range s.OmniQ {
				figs[i] = figure(v)
			}
			cells := []string{s.Work, strings.Join(figs, ", ") + " " + s.Unit}
			for _, p := range peers {
				rs := s.Ratios[p]
				if len(rs) == 0 {
					cells = append(cells, "—")
					continue
				}
				each := make([]string, len(rs))
				for i, v := range rs {
					each[i] = fmt.Sprintf("%.2f", v)
				}
				cells = append(cells, fmt.Sprintf("%s (**%.2f**)", strings.Join(each, ", "), s.Median[p]))
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		}
		fmt.Fprintln(w)
	}
	for i, r := range rr.Rounds {
		fmt.Fprintf(w, "# Round %d of %d\n\n", i+1, len(rr.Rounds))
		WriteTable(w, r)
		fmt.Fprintln(w)
	}
}

// figure formats a figure of the summary: whole numbers for rates, two
// decimals for times and costs.
func figure(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
