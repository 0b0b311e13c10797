package sdk_test

import (
	"os"
	"testing"

	"github.com/omniq/omniq/plugins-sdk/sdktest"
)

func TestMain(m *testing.M) { os.Exit(sdktest.Main(m)) }
