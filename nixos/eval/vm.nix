# What the NixOS test framework adds to every node of a VM test, as far as the
# tests use it: the qemu-vm options they set
# (nixos/modules/virtualisation/qemu-vm.nix) and the state version that
# nixos/modules/testing/test-instrumentation.nix sets at a low priority. (The
# instrumentation's other additions, xwininfo and the backdoor service, put
# nothing on PATH that the test scripts call.)
{ lib, ... }:

let
  opt =
    type: default:
    lib.mkOption {
      inherit type default;
      description = "Declared as in nixpkgs; see the file named above.";
    };
in
{
  options.virtualisation = {
    memorySize = opt lib.types.ints.positive 1024;
    cores = opt lib.types.ints.positive 1;
    diskSize = opt lib.types.ints.positive 1024;
  };

  config.system.stateVersion = lib.mkOverride 1200 lib.trivial.release;
}
