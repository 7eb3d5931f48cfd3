// Slurm, munge and the nodes are Linux-only; so are these tests.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
