using System.Globalization;
using System.Text;
using System.Text.Json;

namespace FarmPlugins.Qarnot;

/// <summary>
/// What a job is on Qarnot, written next to its files (<c>.farm/qarnot/job.json</c> under the job's prefix) so any
/// workstation with the same token can map Qarnot instances back to the request's tasks.
/// </summary>
internal sealed class JobManifest
{
    public int Version { get; set; } = 1;

    public Guid ContextId { get; set; }

    public string Name { get; set; } = string.Empty;

    public string? Submitter { get; set; }

    public DateTimeOffset SubmittedAt { get; set; }

    public string ResourceBucket { get; set; } = string.Empty;

    public string Prefix { get; set; } = string.Empty;

    public string ResultBucket { get; set; } = string.Empty;

    public int MaxAttempts { get; set; } = 1;

    public Dictionary<string, string> Labels { get; set; } = [];

    public List<ManifestTask> Tasks { get; set; } = [];

    public string ToJson() => JsonSerializer.Serialize(this, QarnotJson.Options);

    public static JobManifest? FromJson(string? json) => json is null ? null : QarnotJson.Parse<JobManifest>(json);
}

/// <summary>One task of the request: its Qarnot instance id and where it sits in the dependency order.</summary>
internal sealed class ManifestTask
{
    public string Id { get; set; } = string.Empty;

    public int Index { get; set; }

    public int Level { get; set; }

    public List<string> DependsOn { get; set; } = [];

    public List<string> Outputs { get; set; } = [];

    public Dictionary<string, string>? Labels { get; set; }
}

/// <summary>Qarnot's <c>advancedRanges</c>: inclusive ranges such as <c>1-6,15,20-25</c>.</summary>
internal static class InstanceRanges
{
    public static string Format(IEnumerable<int> numbers)
    {
        var sorted = numbers.Distinct().Order().ToList();
        var text = new StringBuilder();
        for (var i = 0; i < sorted.Count; i++)
        {
            var start = sorted[i];
            while (i + 1 < sorted.Count && sorted[i + 1] == sorted[i] + 1)
            {
                i++;
            }

            if (text.Length > 0)
            {
                text.Append(',');
            }

            text.Append(start.ToString(CultureInfo.InvariantCulture));
            if (sorted[i] != start)
            {
                text.Append('-').Append(sorted[i].ToString(CultureInfo.InvariantCulture));
            }
        }

        return text.ToString();
    }

    public static HashSet<int> Parse(string? ranges)
    {
        var result = new HashSet<int>();
        if (string.IsNullOrWhiteSpace(ranges))
        {
            return result;
        }

        foreach (var part in ranges.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var dash = part.IndexOf('-', 1);
            if (dash < 0)
            {
                if (int.TryParse(part, NumberStyles.Integer, CultureInfo.InvariantCulture, out var single))
                {
                    result.Add(single);
                }

                continue;
            }

            if (int.TryParse(part[..dash], NumberStyles.Integer, CultureInfo.InvariantCulture, out var from)
                && int.TryParse(part[(dash + 1)..], NumberStyles.Integer, CultureInfo.InvariantCulture, out var to))
            {
                for (var n = from; n <= to && n - from < 1_000_000; n++)
                {
                    result.Add(n);
                }
            }
        }

        return result;
    }
}
