namespace ReferenceFarm.Server;

/// <summary>The server's settings, from its command line.</summary>
public sealed class ServerOptions
{
    /// <summary>The URL Kestrel listens on; https is mandatory for a non-loopback address.</summary>
    public Uri Listen { get; set; } = new("http://127.0.0.1:50051");

    /// <summary>The data folder: database, blobs, logs, tokens, certificates.</summary>
    public string DataDirectory { get; set; } = DefaultDataDirectory();

    /// <summary>How long a lease lasts without a heartbeat.</summary>
    public TimeSpan Lease { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The heartbeat interval agents are told to keep.</summary>
    public TimeSpan Heartbeat { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The lease every running task gets when the server starts, so live agents can report in.</summary>
    public TimeSpan RestartGrace { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How often lapsed leases are looked for.</summary>
    public TimeSpan LeaseCheckInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Failures of one agent in one job after which the agent is kept off the job.</summary>
    public int BlocklistThreshold { get; set; } = 3;

    /// <summary>How long an unreferenced blob is kept after it was uploaded or last reported present.</summary>
    public TimeSpan BlobGrace { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>How often the blob store is swept for blobs nothing refers to.</summary>
    public TimeSpan BlobSweepInterval { get; set; } = TimeSpan.FromHours(1);

    /// <summary>The largest gRPC message accepted or sent (a 10,000-task job is a few megabytes).</summary>
    public int MaxMessageBytes { get; set; } = 64 * 1024 * 1024;

    /// <summary>The default data folder: <c>$FARM_DATA/reference-farm-server</c>, else under the user's data folder.</summary>
    /// <returns>The path.</returns>
    public static string DefaultDataDirectory()
    {
        var farmData = Environment.GetEnvironmentVariable("FARM_DATA");
        if (!string.IsNullOrWhiteSpace(farmData))
        {
            return Path.Combine(farmData, "reference-farm-server");
        }

        var xdg = Environment.GetEnvironmentVariable("XDG_DATA_HOME");
        var root = string.IsNullOrWhiteSpace(xdg)
            ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".local", "share")
            : xdg;
        return Path.Combine(root, "farmplugins", "reference-farm-server");
    }

    /// <summary>Checks the settings; the message names every bad one.</summary>
    /// <exception cref="ArgumentException">A setting is out of range.</exception>
    public void Validate()
    {
        var errors = new List<string>();
        if (Listen.Scheme is not ("http" or "https"))
        {
            errors.Add($"--listen must be an http:// or https:// URL, not '{Listen}'");
        }

        if (Listen.Scheme == "http" && !IsLoopback(Listen))
        {
            errors.Add($"--listen {Listen}: TLS is mandatory when listening on a non-loopback address; use https://");
        }

        if (Lease <= TimeSpan.Zero)
        {
            errors.Add("--lease-ms must be positive");
        }

        if (Heartbeat <= TimeSpan.Zero || Heartbeat >= Lease)
        {
            errors.Add("--heartbeat-ms must be positive and shorter than the lease");
        }

        if (RestartGrace <= TimeSpan.Zero)
        {
            errors.Add("--restart-grace-ms must be positive");
        }

        if (LeaseCheckInterval <= TimeSpan.Zero)
        {
            errors.Add("--lease-check-ms must be positive");
        }

        if (BlobGrace < TimeSpan.Zero || BlobSweepInterval <= TimeSpan.Zero)
        {
            errors.Add("--blob-grace-ms must not be negative and --blob-sweep-ms must be positive");
        }

        if (BlocklistThreshold < 1)
        {
            errors.Add("--blocklist-after must be at least 1");
        }

        if (errors.Count > 0)
        {
            throw new ArgumentException(string.Join("; ", errors));
        }
    }

    /// <summary>Whether a URL names this machine only.</summary>
    /// <param name="url">The URL.</param>
    /// <returns><see langword="true"/> for localhost, 127.0.0.0/8 and ::1.</returns>
    public static bool IsLoopback(Uri url)
    {
        ArgumentNullException.ThrowIfNull(url);
        if (url.IsLoopback)
        {
            return true;
        }

        return System.Net.IPAddress.TryParse(url.Host.Trim('[', ']'), out var address) && System.Net.IPAddress.IsLoopback(address);
    }
}
