using Xunit;

namespace FarmPlugins.TestSupport;

/// <summary>
/// The real components tests need. A test that needs one fails when it is missing; it is skipped only when
/// FARM_TEST_SKIP names the component (comma-separated), and scripts/test then prints what was skipped.
/// </summary>
public static class Components
{
    public const string PovRay = "povray";
    public const string Blender = "blender";
    public const string Slurm = "slurm";
    public const string S3 = "s3";

    public static bool IsSkipped(string component) =>
        (Environment.GetEnvironmentVariable("FARM_TEST_SKIP") ?? string.Empty)
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Any(c => c.Equals(component, StringComparison.OrdinalIgnoreCase) || c == "all");

    public static string? SkipReason(string[] components)
    {
        var skipped = components.Where(IsSkipped).ToArray();
        return skipped.Length == 0 ? null : $"FARM_TEST_SKIP names {string.Join(", ", skipped)}";
    }

    /// <summary>The full path of an executable on PATH; fails the test with how to install it when missing.</summary>
    public static string RequireExecutable(string name, string install)
    {
        var found = FindOnPath(name);
        if (found is null)
        {
            throw new InvalidOperationException(
                $"'{name}' is not installed: {install} (or set FARM_TEST_SKIP to skip the tests that need it).");
        }

        return found;
    }

    public static string? FindOnPath(string name)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(Path.PathSeparator))
        {
            if (dir.Length == 0)
            {
                continue;
            }

            var candidate = Path.Combine(dir, name);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        foreach (var dir in new[] { "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/local/sbin" })
        {
            var candidate = Path.Combine(dir, name);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }
}

/// <summary>A fact that needs real components; skipped only when FARM_TEST_SKIP names one of them.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class ComponentFactAttribute : FactAttribute
{
    public ComponentFactAttribute(params string[] components)
    {
        var reason = Components.SkipReason(components);
        if (reason is not null)
        {
            Skip = reason;
        }
    }
}

/// <summary>A theory that needs real components; skipped only when FARM_TEST_SKIP names one of them.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class ComponentTheoryAttribute : TheoryAttribute
{
    public ComponentTheoryAttribute(params string[] components)
    {
        var reason = Components.SkipReason(components);
        if (reason is not null)
        {
            Skip = reason;
        }
    }
}
