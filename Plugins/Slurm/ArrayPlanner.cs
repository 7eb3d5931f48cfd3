using System.Globalization;
using System.Text;
using FarmApi.TaskScripts;

namespace FarmPlugins.Slurm;

/// <summary>
/// Splits the tasks of one run into array jobs: one per group of tasks sharing their dependencies, cut into chunks of
/// MaxArraySize indices, in an order where every array comes after those it waits for.
/// </summary>
internal static class ArrayPlanner
{
    /// <summary>Plans the arrays of a run of <paramref name="ordinals"/> (positions in the request).</summary>
    public static List<ArrayRecord> Plan(JobRecord record, IReadOnlyCollection<int> ordinals)
    {
        var inRun = ordinals.ToHashSet();
        var ordinalOf = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < record.Tasks.Count; i++)
        {
            ordinalOf[record.Tasks[i].Spec.Id] = i;
        }

        // Group by the (sorted) dependencies inside this run; first appearance fixes the group's order.
        var groups = new List<(string Key, List<int> Members, List<int> Deps)>();
        var groupOf = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var ordinal in inRun.Order())
        {
            var deps = (record.Tasks[ordinal].Spec.DependsOn ?? []).Select(id => ordinalOf[id]).Where(inRun.Contains).Distinct().Order().ToList();
            var key = string.Join(',', deps);
            if (!groupOf.TryGetValue(key, out var index))
            {
                index = groups.Count;
                groupOf[key] = index;
                groups.Add((key, [], deps));
            }

            groups[index].Members.Add(ordinal);
        }

        // Kahn's order over groups; the request was checked for cycles, so every group is placed.
        var memberGroup = new Dictionary<int, int>();
        for (var g = 0; g < groups.Count; g++)
        {
            foreach (var member in groups[g].Members)
            {
                memberGroup[member] = g;
            }
        }

        var placed = new List<int>();
        var done = new HashSet<int>();
        while (placed.Count < groups.Count)
        {
            var next = Enumerable.Range(0, groups.Count).FirstOrDefault(g => !done.Contains(g)
                && groups[g].Deps.All(d => memberGroup[d] == g || done.Contains(memberGroup[d])), -1);
            if (next < 0)
            {
                throw new InvalidOperationException("The task groups depend on each other in a cycle.");
            }

            done.Add(next);
            placed.Add(next);
        }

        var arrays = new List<ArrayRecord>();
        foreach (var g in placed)
        {
            foreach (var chunk in groups[g].Members.GroupBy(o => o / record.MaxArraySize).OrderBy(c => c.Key))
            {
                arrays.Add(new ArrayRecord
                {
                    Key = $"g{g.ToString(CultureInfo.InvariantCulture)}c{chunk.Key.ToString(CultureInfo.InvariantCulture)}",
                    Chunk = chunk.Key,
                    Ordinals = [.. chunk.Order()],
                    DependsOn = groups[g].Deps,
                });
            }
        }

        return arrays;
    }

    /// <summary>Slurm's index list for <c>--array</c>: ranges where the indices are consecutive, e.g. <c>0-3,5,7-9</c>.</summary>
    public static string IndexList(IEnumerable<int> indices)
    {
        var sorted = indices.Distinct().Order().ToList();
        var text = new StringBuilder();
        for (var i = 0; i < sorted.Count;)
        {
            var start = sorted[i];
            var end = start;
            while (i + 1 < sorted.Count && sorted[i + 1] == end + 1)
            {
                end = sorted[++i];
            }

            i++;
            if (text.Length > 0)
            {
                text.Append(',');
            }

            text.Append(start.ToString(CultureInfo.InvariantCulture));
            if (end != start)
            {
                text.Append('-').Append(end.ToString(CultureInfo.InvariantCulture));
            }
        }

        return text.ToString();
    }

    /// <summary>
    /// The <c>--dependency</c> value for an array of <paramref name="run"/>: <c>afterok:</c> on whole arrays when it waits
    /// for every element, on single elements (<c>12_3</c>) otherwise; null when it waits for nothing.
    /// </summary>
    public static string? Dependency(RunRecord run, ArrayRecord array, int maxArraySize)
    {
        if (array.DependsOn.Count == 0)
        {
            return null;
        }

        var wanted = array.DependsOn.ToHashSet();
        var parts = new List<string>();
        foreach (var source in run.Arrays.Where(a => a.Ordinals.Any(wanted.Contains)))
        {
            var id = source.SlurmJobId ?? throw new InvalidOperationException($"Array {source.Key} was not submitted before {array.Key}.");
            if (source.Ordinals.All(wanted.Contains))
            {
                parts.Add(id);
            }
            else
            {
                parts.AddRange(source.Ordinals.Where(wanted.Contains)
                    .Select(o => id + "_" + (o - source.Chunk * maxArraySize).ToString(CultureInfo.InvariantCulture)));
            }
        }

        return "afterok:" + string.Join(':', parts);
    }

    /// <summary>The script sbatch runs for every element: picks the task, makes the attempts, runs the task script.</summary>
    public static string BatchScript(string nodeStatusFolder, string nodeTaskScript, int maxAttempts)
    {
        var max = maxAttempts.ToString(CultureInfo.InvariantCulture);
        return $$"""
            #!/bin/sh
            # Generated by the FarmPlugins Slurm adapter: array element -> task, up to {{max}} attempts, then the task script.
            farm_base="${1:-0}"
            FARM_TASK_INDEX=$((SLURM_ARRAY_TASK_ID + farm_base)); export FARM_TASK_INDEX
            farm_status={{TaskScriptWriter.Quote(nodeStatusFolder)}}
            mkdir -p "$farm_status"
            farm_attempt=0
            while :; do
              farm_attempt=$((farm_attempt + 1))
              farm_node=$(uname -n)
              printf '%s %s\n' "$farm_attempt" "$farm_node" > "$farm_status/i$FARM_TASK_INDEX.attempt"
              echo "farm: attempt $farm_attempt of {{max}} on $farm_node (Slurm job ${SLURM_ARRAY_JOB_ID:-?}_${SLURM_ARRAY_TASK_ID})"
              /bin/sh {{TaskScriptWriter.Quote(nodeTaskScript)}}
              farm_rc=$?
              [ "$farm_rc" -eq 0 ] && exit 0
              [ "$farm_attempt" -ge {{max}} ] && exit "$farm_rc"
            done

            """.Replace("\r\n", "\n", StringComparison.Ordinal);
    }
}
