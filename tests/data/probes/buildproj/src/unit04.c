/* One of the tiny compile units of the build-probe test project. */
int unit04(int x);

int unit04(int x)
{
	int acc = 4;
	for (int k = 0; k < x; k++)
		acc = acc * 31 + k;
	return acc;
}
