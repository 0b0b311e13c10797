package dashboard

import (
	"os"
	"testing"

	"github.com/omniq/omniq/internal/testbin"
)

func TestMain(m *testing.M) { os.Exit(testbin.Main(m)) }
