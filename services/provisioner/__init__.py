"""The provisioner: carries out approved commands against provider APIs."""
