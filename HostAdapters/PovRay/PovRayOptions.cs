namespace FarmPlugins.Hosts.PovRay;

/// <summary>How the POV-Ray adapter searches for dependencies and sizes frames.</summary>
public sealed record PovRayOptions
{
    /// <summary>POV-Ray's system include folder: present on every node, so files found there are not staged.</summary>
    public const string DefaultSystemIncludeDirectory = "/usr/share/povray-3.7/include";

    /// <summary>Extra library paths, searched after the scene's folder in order (POV-Ray's <c>Library_Path</c> / <c>+L</c>).</summary>
    public IReadOnlyList<string> LibraryPaths { get; init; } = [];

    /// <summary>The system include folder (searched last, never staged).</summary>
    public string SystemIncludeDirectory { get; init; } = DefaultSystemIncludeDirectory;

    /// <summary>The frame size when the render settings give none (POV-Ray's own default).</summary>
    public ImageSize DefaultSize { get; init; } = new(320, 240);

    /// <summary>The antialiasing threshold when <see cref="RenderSettings.Antialias"/> is on (<c>+A0.3</c>); 0 supersamples every pixel.</summary>
    public double AntialiasThreshold { get; init; } = 0.3;

    /// <summary>The antialiasing depth (<c>+R</c>, 1 to 9) when antialiasing is on; null keeps POV-Ray's default (3).</summary>
    public int? AntialiasDepth { get; init; }

    /// <summary>Where rewritten copies of scene files are written before staging; a temporary folder when null.</summary>
    public string? StagingDirectory { get; init; }

    /// <summary>Checks the options; one message names every bad one.</summary>
    /// <exception cref="ArgumentException">An option is invalid.</exception>
    public void Validate()
    {
        var errors = new List<string>();
        foreach (var path in LibraryPaths)
        {
            if (string.IsNullOrWhiteSpace(path))
            {
                errors.Add("LibraryPaths: an entry is empty");
            }
        }

        if (AntialiasThreshold is < 0 or > 3 || double.IsNaN(AntialiasThreshold))
        {
            errors.Add($"AntialiasThreshold: {AntialiasThreshold} is not between 0 and 3");
        }

        if (AntialiasDepth is < 1 or > 9)
        {
            errors.Add($"AntialiasDepth: {AntialiasDepth} is not between 1 and 9");
        }

        if (DefaultSize.Width < 1 || DefaultSize.Height < 1)
        {
            errors.Add($"DefaultSize: {DefaultSize} must be at least 1x1");
        }

        if (errors.Count > 0)
        {
            throw new ArgumentException("Invalid POV-Ray options: " + string.Join("; ", errors) + ".");
        }
    }
}
