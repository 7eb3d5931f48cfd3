namespace FarmPlugins.Hosts;

/// <summary>
/// The DCC side of the contract: knows one kind of scene and turns "render this scene, these frames, this way" into
/// files to stage, tasks and outputs, for any farm.
/// </summary>
public interface IHostAdapter
{
    /// <summary>The host's name, which is also the <see cref="FarmApi.InstallationMetadata.Host"/> its tasks need: <c>povray</c>.</summary>
    string Name { get; }

    /// <summary>The scene file extensions it renders, lower case with the dot: <c>.pov</c>.</summary>
    IReadOnlyList<string> Extensions { get; }

    /// <summary>
    /// Reads the scene, collects every file it depends on and plans the render. Nothing is sent anywhere: a missing
    /// dependency or a bad setting is reported here, before submission.
    /// </summary>
    /// <param name="scenePath">The scene file on the workstation.</param>
    /// <param name="settings">How to render it.</param>
    /// <param name="cancellationToken">Cancels the planning.</param>
    /// <returns>The plan: files, hosts, outputs, and the tasks once the hosts' installations are known.</returns>
    /// <exception cref="SceneException">The scene cannot be read or a dependency is missing (names the file and the line).</exception>
    /// <exception cref="ArgumentException">A setting is invalid for this host (names the setting).</exception>
    Task<RenderPlan> PlanAsync(string scenePath, RenderSettings settings, CancellationToken cancellationToken = default);
}

/// <summary>The checks every <see cref="IHostAdapter.PlanAsync"/> starts with, written once.</summary>
public static class HostAdapterArguments
{
    /// <summary>Checks the arguments of a plan: a scene path, valid settings, a scene file that exists.</summary>
    /// <param name="scenePath">The scene file on the workstation.</param>
    /// <param name="settings">How to render it (validated).</param>
    /// <exception cref="ArgumentException">An argument is missing or a setting is invalid (names it).</exception>
    /// <exception cref="SceneException">The scene file does not exist.</exception>
    public static void Validate(string scenePath, RenderSettings settings)
    {
        ArgumentException.ThrowIfNullOrEmpty(scenePath);
        ArgumentNullException.ThrowIfNull(settings);
        settings.Validate();
        if (!File.Exists(scenePath))
        {
            throw new SceneException("the scene file does not exist", scenePath);
        }
    }
}
