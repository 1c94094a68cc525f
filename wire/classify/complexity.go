package classify

// PostgreSQL's lexer matches the longest run of operator characters and then
// often gives most of it back (an operator ending in + or -, a /* inside the
// run, nested /* in a comment), so a long run costs time quadratic in its
// length: 40 KB of "+-" or "/*" takes seconds, in the proxy's parser and in
// the backend alike, and cannot be interrupted. tooComplex refuses such text
// before either sees it. It counts every run, even inside literals and
// comments, which is conservative: SQL has short runs ("<>", "::", "/**/"), and
// a comment banner of 80 characters adds 6,400 to a budget of 16 million plus
// 128 per byte of text.

var opChars [256]bool

func init() {
	for _, c := range []byte("~!@#^&|`?+-*/%<>=") {
		opChars[c] = true
	}
}

const (
	lexBudgetBase    = 1 << 24 // ≥ 4096²
	lexBudgetPerByte = 128
)

// tooComplex reports whether the sum of the squares of the operator-character
// run lengths in s exceeds the lexer budget.
func tooComplex(s string) bool {
	if len(s) <= 4096 {
		return false // the sum of squares is at most len(s)², within the base budget
	}
	limit := lexBudgetBase + lexBudgetPerByte*len(s)
	cost, run := 0, 0
	for i := 0; i < len(s); i++ {
		if opChars[s[i]] {
			run++
			continue
		}
		if run > 1 {
			cost += run * run
			if cost > limit {
				return true
			}
		}
		run = 0
	}
	return cost+run*run > limit
}
