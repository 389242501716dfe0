package main

import (
	"github.com/keyfort/keyfort/examples/custom-plugin/filekeys"
	"github.com/keyfort/keyfort/provider/plugin"
)

func main() { plugin.ServeFactory(filekeys.Factory) }
