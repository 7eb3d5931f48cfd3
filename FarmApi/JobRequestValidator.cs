using System.Globalization;

namespace FarmApi;

/// <summary>
/// The checks <see cref="BaseFarmPlugin.SubmitJobAsync"/> runs before an adapter sees a request; hosts may run
/// them earlier to report errors before staging files.
/// </summary>
public static class JobRequestValidator
{
    /// <summary>The longest task id accepted.</summary>
    public const int MaxTaskIdLength = 200;

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first field that is wrong.</summary>
    /// <param name="request">The request.</param>
    /// <exception cref="ArgumentNullException"><paramref name="request"/> is null.</exception>
    /// <exception cref="ArgumentException">A field is wrong; <see cref="ArgumentException.ParamName"/> names it.</exception>
    public static void Validate(JobRequest request)
    {
        var error = FindError(request);
        if (error is not null)
        {
            throw new ArgumentException($"{error.Value.Field}: {error.Value.Reason}", error.Value.Field);
        }
    }

    /// <summary>The first wrong field of <paramref name="request"/> and why, or <see langword="null"/> when it is valid.</summary>
    /// <param name="request">The request.</param>
    /// <returns>The field and the reason.</returns>
    public static (string Field, string Reason)? FindError(JobRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.Context is null)
        {
            return ("Context", "is required");
        }

        if (request.Context.Id == Guid.Empty)
        {
            return ("Context.Id", "must not be the empty UUID");
        }

        if (string.IsNullOrWhiteSpace(request.Name))
        {
            return ("Name", "is required");
        }

        if (HasControl(request.Name, allowTab: true))
        {
            return ("Name", "contains a control character");
        }

        if (string.IsNullOrWhiteSpace(request.TemporaryFolder))
        {
            return ("TemporaryFolder", "is required: use the folder CreateTemporaryFolderAsync returned");
        }

        if (request.Priority is < 0 or > 100)
        {
            return ("Priority", $"must be between 0 and 100, not {request.Priority.ToString(CultureInfo.InvariantCulture)}");
        }

        if (request.MaxAttempts < 1)
        {
            return ("MaxAttempts", $"must be at least 1, not {request.MaxAttempts.ToString(CultureInfo.InvariantCulture)}");
        }

        if (request.Tasks is null || request.Tasks.Count == 0)
        {
            return ("Tasks", "must hold at least one task");
        }

        for (var i = 0; i < (request.Files?.Count ?? 0); i++)
        {
            var reason = JobPaths.Check(request.Files![i]);
            if (reason is not null)
            {
                return ($"Files[{i}]", reason);
            }
        }

        foreach (var pair in request.Environment ?? new Dictionary<string, string>())
        {
            if (string.IsNullOrEmpty(pair.Key) || pair.Key.Contains('=', StringComparison.Ordinal) || HasControl(pair.Key, false))
            {
                return ($"Environment[{pair.Key}]", "is not a valid environment variable name");
            }

            if (pair.Value is null || pair.Value.Contains('\0', StringComparison.Ordinal))
            {
                return ($"Environment[{pair.Key}]", "must be a string without NUL characters");
            }
        }

        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < request.Tasks.Count; i++)
        {
            var task = request.Tasks[i];
            var field = $"Tasks[{i}]";
            if (task is null)
            {
                return (field, "is null");
            }

            var idReason = CheckTaskId(task.Id);
            if (idReason is not null)
            {
                return ($"{field}.Id", idReason);
            }

            if (!ids.TryAdd(task.Id, i))
            {
                return ($"{field}.Id", $"'{task.Id}' is used by Tasks[{ids[task.Id]}] too; task ids must be unique");
            }

            if (task.Commands is null || task.Commands.Count == 0)
            {
                return ($"{field}.Commands", "must hold at least one command");
            }

            for (var c = 0; c < task.Commands.Count; c++)
            {
                var command = task.Commands[c];
                if (command is null || string.IsNullOrWhiteSpace(command.Executable))
                {
                    return ($"{field}.Commands[{c}].Executable", "is empty");
                }

                if (command.Executable.Contains('\0', StringComparison.Ordinal) || command.Arguments is null
                    || command.Arguments.Any(a => a is null || a.Contains('\0', StringComparison.Ordinal)))
                {
                    return ($"{field}.Commands[{c}]", "arguments must be strings without NUL characters");
                }
            }

            for (var o = 0; o < (task.Outputs?.Count ?? 0); o++)
            {
                var reason = JobPaths.Check(task.Outputs![o]);
                if (reason is not null)
                {
                    return ($"{field}.Outputs[{o}]", reason);
                }
            }

            if (string.IsNullOrWhiteSpace(task.Host))
            {
                return ($"{field}.Host", "is empty");
            }

            if (task.Timeout is { } timeout && timeout <= TimeSpan.Zero)
            {
                return ($"{field}.Timeout", "must be positive");
            }
        }

        for (var i = 0; i < request.Tasks.Count; i++)
        {
            var dependsOn = request.Tasks[i].DependsOn;
            for (var d = 0; d < (dependsOn?.Count ?? 0); d++)
            {
                var dependency = dependsOn![d];
                if (dependency is null || !ids.ContainsKey(dependency))
                {
                    return ($"Tasks[{i}].DependsOn[{d}]", $"'{dependency}' is not a task of this job");
                }

                if (dependency == request.Tasks[i].Id)
                {
                    return ($"Tasks[{i}].DependsOn[{d}]", $"task '{dependency}' depends on itself");
                }
            }
        }

        var cycle = FindCycle(request.Tasks);
        if (cycle is not null)
        {
            return ("Tasks.DependsOn", $"the dependencies form a cycle: {string.Join(" -> ", cycle)}");
        }

        return null;
    }

    /// <summary>Why <paramref name="id"/> is not a valid task id, or <see langword="null"/>.</summary>
    /// <param name="id">The task id.</param>
    /// <returns>The reason.</returns>
    public static string? CheckTaskId(string? id)
    {
        if (string.IsNullOrEmpty(id))
        {
            return "is empty";
        }

        if (id.Length > MaxTaskIdLength)
        {
            return $"is longer than {MaxTaskIdLength.ToString(CultureInfo.InvariantCulture)} characters";
        }

        if (id is "." or "..")
        {
            return $"'{id}' is not a valid task id";
        }

        foreach (var ch in id)
        {
            if (!(char.IsAsciiLetterOrDigit(ch) || ch is '.' or '_' or '-'))
            {
                return $"'{id}' may hold only letters, digits, '.', '_' and '-'";
            }
        }

        return null;
    }

    private static bool HasControl(string text, bool allowTab) =>
        text.Any(c => char.IsControl(c) && !(allowTab && c == '\t'));

    private static List<string>? FindCycle(IReadOnlyList<TaskSpec> tasks)
    {
        var byId = tasks.ToDictionary(t => t.Id, StringComparer.Ordinal);
        var state = new Dictionary<string, int>(StringComparer.Ordinal); // 1 = on the path, 2 = done
        var path = new List<string>();

        foreach (var start in tasks)
        {
            if (state.ContainsKey(start.Id))
            {
                continue;
            }

            // Iterative depth-first search: a 10,000-task chain must not overflow the stack.
            var stack = new Stack<(string Id, int Next)>();
            stack.Push((start.Id, 0));
            state[start.Id] = 1;
            path.Add(start.Id);
            while (stack.Count > 0)
            {
                var (id, next) = stack.Pop();
                var deps = byId[id].DependsOn ?? [];
                if (next < deps.Count)
                {
                    stack.Push((id, next + 1));
                    var dep = deps[next];
                    state.TryGetValue(dep, out var depState);
                    if (depState == 1)
                    {
                        var from = path.IndexOf(dep);
                        var cycle = path.Skip(from).ToList();
                        cycle.Add(dep);
                        return cycle;
                    }

                    if (depState == 0)
                    {
                        state[dep] = 1;
                        path.Add(dep);
                        stack.Push((dep, 0));
                    }
                }
                else
                {
                    state[id] = 2;
                    path.RemoveAt(path.Count - 1);
                }
            }
        }

        return null;
    }
}
