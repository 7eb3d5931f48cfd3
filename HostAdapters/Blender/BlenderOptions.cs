namespace FarmPlugins.Hosts.Blender;

/// <summary>How the Blender adapter asks Blender about a scene on the workstation.</summary>
public sealed record BlenderOptions
{
    /// <summary>The workstation's Blender, run headless to collect dependencies; <c>blender</c> on PATH by default.</summary>
    public string Executable { get; init; } = "blender";

    /// <summary>How long dependency collection may take.</summary>
    public TimeSpan CollectTimeout { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>Where the per-render setup script is written before staging; a temporary folder when null.</summary>
    public string? StagingDirectory { get; init; }

    /// <summary>Checks the options; one message names every bad one.</summary>
    /// <exception cref="ArgumentException">An option is invalid.</exception>
    public void Validate()
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(Executable))
        {
            errors.Add("Executable: is empty");
        }

        if (CollectTimeout <= TimeSpan.Zero)
        {
            errors.Add("CollectTimeout: must be positive");
        }

        if (errors.Count > 0)
        {
            throw new ArgumentException("Invalid Blender options: " + string.Join("; ", errors) + ".");
        }
    }
}
