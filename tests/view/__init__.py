"""Tests of flowrunner/view (`flowrun view`): a package, so its conftest is `view.conftest`, not `conftest`."""
