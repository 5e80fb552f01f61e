# A whole example host: `nixos-rebuild build --flake .#example`. Valerix itself
# is nixos/example/valerix.nix, the part to import into a host of your own;
# this file adds what only a machine of its own sets.
{
  imports = [ ./valerix.nix ];

  nixpkgs.hostPlatform = "x86_64-linux";
  system.stateVersion = "25.11";

  boot.loader.grub.device = "nodev";
  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
  };
}
